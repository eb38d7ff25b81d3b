"""ImageNet facts shared by the RGB networks."""

from torchvision.models._meta import _IMAGENET_CATEGORIES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CATEGORIES: tuple[str, ...] = tuple(_IMAGENET_CATEGORIES)
