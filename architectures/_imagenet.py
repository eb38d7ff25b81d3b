"""ImageNet facts shared by the RGB networks.

The 1,000 class names (torchvision's list) are read from a text file beside this module,
so importing the networks does not import all of torchvision.
"""

from pathlib import Path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CATEGORIES: tuple[str, ...] = tuple(
    (Path(__file__).with_name("imagenet_classes.txt")).read_text().splitlines()
)
