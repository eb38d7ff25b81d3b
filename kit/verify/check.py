"""Verifying artifacts against eager PyTorch: at export (before anything lands) and later,
from a saved directory (``kit parity``).

Runners come from :mod:`kit.runners`, the judging from the rule passed in (:mod:`kit.rule`):
full-precision artifacts by :class:`~kit.rule.Tolerance` on every input, a cheaper variant
(int8, fp16) by :class:`~kit.rule.Agreement` on real samples, at the limit recorded with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from architectures import ModelSpec, UnknownModelError

from ..artifact import (
    DEFAULT_BATCH_SIZES,
    MODEL_FILE,
    ArtifactFile,
    Limits,
    Manifest,
    ShapeRules,
    checked_export,
    parse_grid,
    served_name,
    verify_files,
)
from ..data import DataChoice
from ..errors import ArtifactError, UsageError, first_line
from ..models import (
    GivenFacts,
    load_network,
    read_state_dict,
    registered_spec,
    resolve_spec,
    with_facts,
)
from ..parity import (
    ParityRun,
    RunFn,
    Runner,
    closing,
    random_inputs,
    run_parity,
    sized_label,
)
from ..rule import Agreement, Tolerance
from ..runners import RunnerOptions, artifact_label, covered_formats, home_select, make_runners
from ..runners.endpoint import connect, metadata_problems
from ..runners.torch import eager_run

__all__ = [
    "Check",
    "EndpointCheck",
    "allowed_batches",
    "check_artifacts",
    "parity_inputs",
    "rebuild_reference",
    "saved_spec",
    "verify_reference",
    "verify_saved",
]

#: a variant's top-1 agreement says little on fewer samples than this
MIN_VARIANT_SAMPLES = 100

Real = tuple[str, torch.Tensor] | None


def parity_inputs(
    input_shape: Sequence[int],
    batch_sizes: Sequence[int],
    seed: int,
    real: Real,
    rules: ShapeRules | None = None,
    grid: Sequence[tuple[int, int]] = (),
) -> list[tuple[str, np.ndarray]]:
    """Parity's inputs: seeded random batches at ``batch_sizes``; where height or width
    varies, every other size of the rules' grid (and ``grid``, the user's) at batch 1 and
    2; then the real samples."""
    if rules is not None and rules.batch is not None:
        batch_sizes = allowed_batches(rules, batch_sizes)
    inputs = random_inputs(input_shape, batch_sizes, seed=seed)
    if rules is not None and rules.spatial:
        inputs += grid_inputs(input_shape, rules, grid, seed)
    if real is not None:
        inputs.append((real[0], np.ascontiguousarray(real[1].numpy(), dtype=np.float32)))
    return inputs


#: the largest batch parity runs a batch rule at (its maximum, when that is smaller)
LARGEST_CHECKED_BATCH = 64


def allowed_batches(rules: ShapeRules, wanted: Sequence[int], *, largest: bool = True) -> list[int]:
    """The batch sizes a batch rule allows among ``wanted``, and (``largest``) the largest
    it accepts, up to ``LARGEST_CHECKED_BATCH``."""
    rule = rules.batch
    assert rule is not None
    found = {b for b in wanted if rule.allows(b)}
    most = min(rule.max, LARGEST_CHECKED_BATCH)
    most -= most % rule.multiple
    if largest and rule.allows(most):
        found.add(most)
    return sorted(found) or [rule.min]


def grid_inputs(
    input_shape: Sequence[int],
    rules: ShapeRules,
    extra: Sequence[tuple[int, int]],
    seed: int,
) -> list[tuple[str, np.ndarray]]:
    """Seeded random batches of 1 and 2 at each grid size but the example's, labelled
    ``random b=1 64x512``."""
    rng = np.random.default_rng(seed + 1)
    channels, example = input_shape[0], (input_shape[1], input_shape[2])
    inputs = []
    for h, w in rules.grid(input_shape, extra):
        if (h, w) == example:
            continue
        for b in allowed_batches(rules, (1, 2), largest=False) if rules.batch else (1, 2):
            x = rng.standard_normal((b, channels, h, w), dtype=np.float32)
            inputs.append((sized_label(b, h, w), x))
    return inputs


def reference_sizes(
    input_shape: Sequence[int], rules: ShapeRules | None, seed: int
) -> list[tuple[str, np.ndarray]]:
    """The sizes an export's reference data adds where height or width varies, so that
    ``self_check()`` proves more than one size where the model lands: the smallest and
    both non-square corners of the grid, a sample each."""
    if rules is None or not rules.spatial:
        return []
    c, h0, w0 = input_shape
    hs = (rules.height.min, rules.height.max) if rules.height else (h0, h0)
    ws = (rules.width.min, rules.width.max) if rules.width else (w0, w0)
    rng = np.random.default_rng(seed + 2)
    sizes = dict.fromkeys([(hs[0], ws[0]), (hs[0], ws[1]), (hs[1], ws[0])])
    return [
        (sized_label(1, h, w), rng.standard_normal((1, c, h, w), dtype=np.float32))
        for h, w in sizes
        if (h, w) != (h0, w0)
    ]


class Check:
    """One parity run of a directory's artifacts against a reference: the eager network,
    or (``kit parity --reference``) the outputs an export keeps beside it."""

    def __init__(
        self,
        reference: RunFn | dict[str, list[np.ndarray]],
        name: str,
        rule: Tolerance,
        output_names: Any,
    ) -> None:
        self._reference = reference
        self._answers: dict[str, list[np.ndarray]] = {}
        self.report = ParityRun(model=name, rule=rule)
        self.output_names = output_names

    def expected(self, inputs: Sequence[tuple[str, np.ndarray]]) -> list[list[np.ndarray]]:
        """The reference's outputs for each input (eager runs once per input label; kept
        reference data is looked up by its set's label)."""
        for label, x in inputs:
            if label not in self._answers:
                known = self._reference
                self._answers[label] = known[label] if isinstance(known, dict) else known(x)
        return [self._answers[label] for label, _ in inputs]

    def run(
        self,
        directory: Path,
        artifacts: Sequence[ArtifactFile],
        inputs: list[tuple[str, np.ndarray]],
        *,
        runtimes: Sequence[str] = ("python",),
        provider: str = "auto",
        limits: dict[str, Limits] | None = None,
        static: Collection[str] = (),
    ) -> ParityRun:
        """Every artifact in every runtime; variants (``limits`` by artifact label, ``onnx
        int8``) by agreement; the ``static`` files (names) at the example's size only.

        Raises:
            ProviderError: ``provider`` names a provider that cannot run here.
            RuntimeMissing: a runtime asked for cannot run here.
        """
        options = RunnerOptions(provider=provider)
        self._elsewhere(artifacts, covered_formats(runtimes))
        try:
            runners = make_runners(directory, artifacts, runtimes, options)
        except UsageError:  # a provider or a runtime that cannot run here
            raise
        except Exception as exc:  # a corrupt artifact: report it, do not crash
            self.report.problems.append(f"cannot load an artifact: {first_line(exc)}")
            return self.report
        if not runners:
            self.report.problems.append(
                f"no file of this export runs in {', '.join(runtimes)}: nothing was checked"
            )
        for runner in runners:
            if runner.note and runner.note not in self.report.notes:
                self.report.notes.append(runner.note)
        fixed = {artifact_label(a) for a in artifacts if a.name in static}
        with closing(runners):
            full = [r for r in runners if r.precision == "fp32"]
            self._fp32([r for r in full if r.artifact not in fixed], inputs)
            # a file written at the example's size only: checked there
            example = [(label, x) for label, x in inputs if x.shape[1:] == inputs[0][1].shape[1:]]
            self._fp32([r for r in full if r.artifact in fixed], example)
            self._variants([r for r in runners if r.precision != "fp32"], inputs, limits or {})
        return self.report

    def _fp32(self, runners: list[Runner], inputs: list[tuple[str, np.ndarray]]) -> None:
        if runners:
            run_parity(
                None,
                runners,
                inputs,
                report=self.report,
                output_names=self.output_names,
                expected=self.expected(inputs),
            )

    def _elsewhere(self, artifacts: Sequence[ArtifactFile], covered: set[str]) -> None:
        """A note naming the files no runtime of this run can run, and where they run."""
        elsewhere: dict[str, list[str]] = {}
        for a in artifacts:
            if a.format not in covered:
                elsewhere.setdefault(home_select(a.format), []).append(a.name)
        if elsewhere:
            where = "; ".join(
                f"{', '.join(n)} in {r} (--runtime {r})" for r, n in elsewhere.items()
            )
            self.report.notes.append(f"not checked in this run: {where}")

    def _variants(
        self, runners: list[Runner], inputs: list[tuple[str, np.ndarray]], limits: dict[str, Limits]
    ) -> None:
        artifacts = list(dict.fromkeys(r.artifact for r in runners))
        if not artifacts:
            return
        real = [(label, x) for label, x in inputs if not label.startswith("random")]
        if not real or len(real[-1][1]) < MIN_VARIANT_SAMPLES:
            have = f"the test data holds {len(real[-1][1])}" if real else "pass --data-dir"
            self.report.notes.append(
                f"variants {', '.join(artifacts)} not checked: they are judged by top-1 "
                f"agreement on at least {MIN_VARIANT_SAMPLES} real samples ({have}); their "
                "own check on the whole test set is in the manifest (kit report)"
            )
            return
        for artifact in artifacts:
            rule = Agreement(limits.get(artifact, Limits()).min_agreement)
            self.report.notes.append(
                f"the {artifact} variant is judged by {rule.describe()} (its limit), not by "
                "atol/rtol"
            )
            mine = [r for r in runners if r.artifact == artifact]
            last = real[-1:]
            wanted = self.expected(last)
            run_parity(None, mine, last, report=self.report, rule=rule, expected=wanted)


def check_artifacts(
    model: nn.Module,
    directory: Path,
    artifacts: Sequence[ArtifactFile],
    *,
    name: str,
    input_shape: Sequence[int],
    rule: Tolerance,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    real: Real = None,
    seed: int = 0,
    output_names: Sequence[str] | None = None,
    runtimes: Sequence[str] = ("python",),
    rules: ShapeRules | None = None,
    grid: Sequence[tuple[int, int]] = (),
    static: Collection[str] = (),
) -> ParityRun:
    """Parity of the ``artifacts`` in ``directory`` against the eager ``model`` in each of
    ``runtimes`` (an export checks its files with this before anything lands), on the
    ``rules``' size grid where height or width varies (the ``static`` files at the
    example's size)."""
    inputs = parity_inputs(input_shape, batch_sizes, seed, real, rules, grid)
    check = Check(eager_run(model, name), name, rule, output_names)
    return check.run(directory, artifacts, inputs, runtimes=runtimes, static=static)


def saved_spec(manifest: Manifest, factory: str | None = None) -> ModelSpec:
    """The network's spec as an export's manifest records it: its input shape, and the
    normalisation and class names the export carries (facts are data; only code is not
    taken from a manifest).

    A network is rebuilt from kit's registry or from the ``factory`` the caller names
    (``--factory``), nothing else: a manifest is a file people download, and a factory (or
    a ``module:fn``-looking name) it records is shown, never imported, whatever
    ``sys.path`` holds.

    Raises:
        UsageError: the manifest names a network kit does not register and the caller
            named no factory (the sentence says to pass ``--factory``).
    """
    shape = tuple(manifest.model.input_shape)
    facts = manifest.facts
    said = GivenFacts(facts.mean, facts.std, facts.class_names or None, shape)
    if factory:
        return with_facts(resolve_spec(factory, shape), said)
    recorded, name = manifest.model.factory, manifest.model.name
    if recorded:
        raise UsageError(
            f"This export was made from the network factory {recorded!r}, which kit does not "
            "import because a manifest names it; if you trust that code, pass --factory "
            f"{recorded}."
        )
    try:
        return with_facts(registered_spec(name, shape), said)
    except UnknownModelError:
        raise UsageError(
            f"This export names the network {name!r}, which kit does not register, and kit "
            "never imports code because a manifest names it; if it was made from your own "
            "network, pass --factory MODULE:FN."
        ) from None


def rebuild_reference(
    directory: Path, manifest: Manifest, factory: str | None = None
) -> tuple[ModelSpec, nn.Module]:
    """The spec and eager network an export was made from, as its manifest records.

    Raises:
        ArtifactError: the weights file is missing or does not match its sha256.
    """
    spec = saved_spec(manifest, factory)
    weights = manifest.model.weights
    path = None
    if weights is not None:
        path = directory / weights.file
        if verify_files(directory, {weights.file: manifest.files[weights.file]}):
            raise ArtifactError(f"{path} is missing or does not match its sha256 in the manifest.")
    asked = manifest.model.num_classes or None
    try:
        network = load_network(spec, weights=path, num_classes=asked, seed=manifest.model.seed)
    except UsageError:  # the weights' head disagrees with the manifest's class count
        found = spec.classes_in(read_state_dict(path)) if path else None
        raise ArtifactError(
            f"The manifest in {directory} says num_classes {asked} but {path} holds "
            f"{found} classes; re-export the model (kit export --weights alone reads the count)."
        ) from None
    _takes_the_input(network.model, spec, factory)
    return spec, network.model


def _takes_the_input(model: nn.Module, spec: ModelSpec, factory: str | None) -> None:
    """The rebuilt network runs on one sample of the export's input shape.

    Raises:
        UsageError: it does not (a --factory for another network).
    """
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *spec.input_shape))
    except Exception as exc:  # a network can fail in any way on the wrong input
        which = f"--factory {factory}" if factory else spec.name
        raise UsageError(
            f"{which} does not take this export's input {[1, *spec.input_shape]} "
            f"({first_line(exc)}); pass the factory the export was made from."
        ) from None


def verify_saved(
    directory: Path,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    real: Real = None,
    provider: str = "auto",
    runtimes: Sequence[str] = ("python",),
    endpoint: EndpointCheck | None = None,
    factory: str | None = None,
    data: DataChoice | None = None,
    grid: Sequence[str] = (),
) -> ParityRun:
    """Re-verify a saved export: every file's sha256, then parity against eager in each of
    ``runtimes``, or (``endpoint``: URL and served name, the manifest's by default) the
    model a live inference server serves. The eager reference is rebuilt from the manifest;
    with ``data`` that holds labelled images, the whole pipeline (images through kit's
    preprocessing into model.onnx) is checked too. A model whose size varies is checked on
    its rules' grid of sizes, plus ``grid`` (``--grid`` as given: sizes the rules allow).

    Raises:
        ArtifactError: the directory has no readable, valid manifest.
        UsageError: a ``grid`` size the rules refuse, or ``grid`` for a fixed-size model.
    """
    manifest, problems = checked_export(directory)
    facts = manifest.facts
    rule = Tolerance(facts.atol if atol is None else atol, facts.rtol if rtol is None else rtol)
    if problems:  # nothing runs that is not what export wrote
        return ParityRun(model=manifest.name, rule=rule, problems=problems)
    sizes = parse_grid(grid, facts.dynamic)  # refused before anything runs
    spec, model = rebuild_reference(directory, manifest, factory)
    check = Check(eager_run(model, spec.name), spec.name, rule, manifest.output_names)
    inputs = parity_inputs(spec.input_shape, batch_sizes, 0, real, facts.dynamic, sizes)
    if endpoint is not None:
        return _check_endpoint(check, manifest, endpoint, inputs, has_real=real is not None)
    limits = {
        artifact_label(ArtifactFile(v.file, v.format, v.precision)): v.limits
        for v in manifest.variants.values()
    }
    artifacts = manifest.artifacts()
    report = check.run(
        directory, artifacts, inputs, runtimes=runtimes, provider=provider, limits=limits,
        static=manifest.static,
    )  # fmt: skip
    if data is not None and MODEL_FILE in manifest.files and not report.failures:
        from .pipeline import check_pipeline

        trained = manifest.model.weights is not None
        found = check_pipeline(directory / MODEL_FILE, spec, model, data, trained=trained)
        report.pipeline = found.to_dict() if found is not None else None
    return report


@dataclass(frozen=True)
class EndpointCheck:
    """A live server to check: its URL, the model's name there (the manifest's when None),
    and how many clients send at once (each row its own request when more than one)."""

    url: str
    model: str | None = None
    clients: int = 1


def _check_endpoint(
    check: Check,
    manifest: Manifest,
    endpoint: EndpointCheck,
    inputs: list[tuple[str, np.ndarray]],
    has_real: bool,
) -> ParityRun:
    """The model a live server serves against eager: its metadata against the manifest,
    then every input (a variant, ``NAME_int8``, by agreement on the real samples).

    Raises:
        ArtifactError: the server cannot be reached or does not speak the protocol.
        UsageError: the URL is malformed or the server has no such model.
    """
    remote = connect(endpoint.url, endpoint.model or manifest.name)
    report = check.report
    report.problems += metadata_problems(remote, manifest)
    if report.problems:
        return report
    precision = next(
        (p for p in manifest.onnx_variants if remote.model == served_name(manifest.name, p)), None
    )
    if precision is None and endpoint.clients > 1:
        _check_concurrent(check, remote, inputs, endpoint.clients)
    elif precision is None:
        runner = remote.runner()
        wanted = check.expected(inputs)
        names = check.output_names
        run_parity(None, [runner], inputs, report=report, output_names=names, expected=wanted)
    elif not has_real:
        report.problems.append(
            f"{remote.model} is the {precision} variant, judged by top-1 agreement on real "
            "samples; pass --data-dir"
        )
    else:
        rule = Agreement(manifest.onnx_variants[precision].limits.min_agreement)
        runner = remote.runner(f"endpoint {precision}", precision)
        last = inputs[-1:]
        run_parity(None, [runner], last, report=report, rule=rule, expected=check.expected(last))
    return report


def _check_concurrent(
    check: Check, remote: Any, inputs: list[tuple[str, np.ndarray]], clients: int
) -> None:
    """Every row its own request, ``clients`` in flight at once: each answer against eager,
    and against the same request sent alone; the batch sizes the server ran, noted."""
    report, names = check.report, check.output_names
    before = remote.batch_sizes()
    runner = remote.concurrent_runner(clients)
    with closing([runner]):
        answers = [runner.run(x) for _, x in inputs]
    after = remote.batch_sizes()
    mixed = dataclasses.replace(runner, run=_Replay(answers))
    run_parity(None, [mixed], inputs, report=report, output_names=names,
               expected=check.expected(inputs))  # fmt: skip
    alone = dataclasses.replace(runner, runtime=f"{runner.runtime}, against each sent alone",
                                run=_Replay(answers))  # fmt: skip
    expected = [remote.alone(x) for _, x in inputs]
    run_parity(None, [alone], inputs, report=report, output_names=names, expected=expected)
    report.notes.append(_batching_note(before, after, sum(len(x) for _, x in inputs)))


class _Replay:
    """Answers already received, handed out in the order parity asks for them."""

    def __init__(self, answers: list[list[np.ndarray]]) -> None:
        self._answers = iter(answers)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        answer = next(self._answers)
        assert len(answer[0]) == len(x), "answers replayed out of order"
        return answer


def _batching_note(
    before: dict[int, int] | None, after: dict[int, int] | None, requests: int
) -> str:
    if before is None or after is None:
        return (
            "the server publishes no batch-size histogram at /metrics (kit serve does), so "
            "whether its batching mixed the requests is not shown"
        )
    ran = {size: after.get(size, 0) - before.get(size, 0) for size in sorted(after)}
    sizes = ", ".join(f"<={size}: {n}" for size, n in ran.items() if n)
    return f"the server ran these {requests} requests as {sum(ran.values())} batches ({sizes})"


def verify_reference(
    directory: Path, *, runtimes: Sequence[str] = ("python",), provider: str = "auto"
) -> ParityRun:
    """Every file and variant of an export against the reference data kept inside it (no
    eager network rebuilt, no torch for the ONNX runtimes), by the rule its manifest records.

    Raises:
        ArtifactError: no readable manifest, or no reference data.
    """
    from ..runtime.reference import reference_sets

    manifest, problems = checked_export(directory)
    record = manifest.reference
    rule = Tolerance(manifest.facts.atol, manifest.facts.rtol)
    if record is not None:
        rule = Tolerance(record.atol, record.rtol)
    if problems:
        return ParityRun(model=manifest.name, rule=rule, problems=problems)
    sets = reference_sets(directory, manifest)
    labels = [label for label, _, _, _ in sets]
    if len(set(labels)) != len(labels):  # a manifest's labels are data: make them unique
        labels = [f"test_data_set_{i}" for i in range(len(sets))]
    kept = {label: s[3] for label, s in zip(labels, sets, strict=True)}
    check = Check(kept, manifest.name, rule, manifest.output_names)
    limits = {
        artifact_label(ArtifactFile(v.file, v.format, v.precision)): v.limits
        for v in manifest.variants.values()
    }
    inputs = [(label, s[2]) for label, s in zip(labels, sets, strict=True)]
    report = check.run(
        directory, manifest.artifacts(), inputs, runtimes=runtimes, provider=provider, limits=limits
    )
    report.notes.append(
        f"judged against the reference data kept in {directory.name} ({len(sets)} sets), not a rebuilt eager network"
    )
    return report
