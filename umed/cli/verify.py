"""``umed verify``: probes from the owner's clean cases, and the test of a suspect model (thin shell over
:mod:`umed.verify`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from umed.cli import app
from umed.cli._console import user_errors

verify_app = typer.Typer(
    no_args_is_help=True,
    help="Tell whether a suspect model was trained on data marked with your key (docs/verify.md).",
)
app.add_typer(verify_app, name="verify")

_KEY_HELP = "The secret key file umed protect wrote (--key-out; never inside the released folder)."

# the options score and cases share (one declaration each)
_Predictions = Annotated[
    Path | None, typer.Option("--predictions", help="The suspect's predictions for the probes or cases (a folder).")
]
_Model = Annotated[Path | None, typer.Option("--model", help="A TorchScript file or MONAI bundle folder to run.")]
_SpatialDims = Annotated[int, typer.Option("--spatial-dims", help="With --model: 2 (slices) or 3.")]
_Alpha = Annotated[float, typer.Option("--alpha", help="Level of the verdict.")]
_Json = Annotated[Path | None, typer.Option("--json", help="Also write the result as JSON here.")]


@verify_app.command("new-key")
def new_key(
    out: Annotated[Path, typer.Option("--out", help="Key file to write (must not exist).")],
) -> None:
    """Draw a fresh secret key with the shipped mark settings (umed protect draws one itself)."""
    from umed.cli._console import console, fail
    from umed.verify import VerifySettings, draw_key, save_key

    if out.exists():
        fail(f"{out}: key file exists already (a key is never overwritten)")
        return
    settings = VerifySettings.shipped()
    key = save_key(draw_key(settings.family, settings.mark_share), out)
    console.print(f"key written: {key} (keep it secret, outside what you release)")


@verify_app.command("probes")
def probes(
    images: Annotated[Path, typer.Argument(help="Your own clean cases that were never released (images folder).")],
    key: Annotated[Path, typer.Option("--key", help=_KEY_HELP)],
    out: Annotated[Path, typer.Option("--out", help="Probe folder to write (new), to send to the suspect's model.")],
    manifest: Annotated[Path, typer.Option("--manifest", help="Secret probe manifest to write (outside --out).")],
    masks: Annotated[Path | None, typer.Option("--masks", "-m", help="Label maps of the cases.")] = None,
    labels: Annotated[str | None, typer.Option("--labels", help="Labels of the structure, e.g. 1,3,4.")] = None,
    controls: Annotated[int | None, typer.Option("--controls", help="Control marks (default: verify.yaml).")] = None,
    per_mark: Annotated[int | None, typer.Option("--per-mark", help="Slots per mark (default: verify.yaml).")] = None,
) -> None:
    """Write probe images in the cases' own format (marks of the key and of controls in healthy tissue, and the
    unmarked cases), and the secret manifest that says which is which."""
    from umed.cli._console import console, parse_labels
    from umed.verify import VerifySettings, load_key, make_probes

    with user_errors():
        settings = VerifySettings.shipped().replace(controls=controls, per_mark=per_mark)
        run = make_probes(images, masks, load_key(key), out, manifest, settings, structure_labels=parse_labels(labels))
    design = run.manifest.design
    console.print(
        f"probes: {len(run.manifest.files)} files in {run.out} ({len(run.manifest.bases)} clean cases, "
        f"{run.slots} slots on {run.probe_slices} slices, {design.n_controls} control marks + the key, "
        f"smallest possible p = {1 / (design.n_controls + 1):.3g})"
    )
    console.print(f"secret manifest: {run.manifest_path} (keep it with the key)")


@verify_app.command("score")
def score(
    probes: Annotated[Path, typer.Option("--probes", help="The probe folder umed verify probes wrote.")],
    manifest: Annotated[Path, typer.Option("--manifest", help="Its secret probe manifest.")],
    key: Annotated[Path, typer.Option("--key", help=_KEY_HELP)],
    predictions: _Predictions = None,
    model: _Model = None,
    predict: Annotated[
        str | None, typer.Option("--predict", help="A command run as 'COMMAND {in} {out}' that writes predictions.")
    ] = None,
    spatial_dims: _SpatialDims = 2,
    window: Annotated[
        str | None, typer.Option("--window", help="With --model: sliding-window patch, e.g. 48,48,48.")
    ] = None,
    alpha: _Alpha = 0.01,
    json_path: _Json = None,
) -> None:
    """Test whether the suspect was trained on data marked with the key: statistic, p-value, effect and verdict."""
    from umed.cli._console import console, fail, parse_labels
    from umed.verify import load_key, load_probe_manifest, score_with

    if sum(x is not None for x in (predictions, model, predict)) != 1:
        fail("give exactly one of --predictions, --model and --predict")
        return
    with user_errors():
        result = score_with(
            load_probe_manifest(manifest),
            load_key(key),
            probes,
            key_path=key,
            predictions=predictions,
            model=model,
            predict=predict,
            spatial_dims=spatial_dims,
            window=parse_labels(window),
            alpha=alpha,
            json_path=json_path,
        )
    _print(console, result)


@verify_app.command("cases")
def cases(
    images: Annotated[Path, typer.Argument(help="Every clean case, released and private (images folder).")],
    key: Annotated[Path, typer.Option("--key", help=_KEY_HELP + " It lists the private cases.")],
    masks: Annotated[Path | None, typer.Option("--masks", "-m", help="Label maps of the cases.")] = None,
    predictions: _Predictions = None,
    model: _Model = None,
    spatial_dims: _SpatialDims = 2,
    labels: Annotated[str | None, typer.Option("--labels", help="Labels of the structure, e.g. 1,3,4.")] = None,
    alpha: _Alpha = 0.01,
    json_path: _Json = None,
) -> None:
    """The mark-free test: does the suspect fit the released cases better than your private ones (exact
    permutation test over the split; needs a release made with umed protect --private-share)?"""
    from umed.cli._console import console, fail, parse_labels
    from umed.verify import load_key
    from umed.verify.cases import score_cases

    if (predictions is None) == (model is None):
        fail("give exactly one of --predictions and --model")
        return
    with user_errors():
        result = score_cases(
            images,
            masks,
            load_key(key),
            predictions=predictions,
            model=model,
            spatial_dims=spatial_dims,
            structure_labels=parse_labels(labels),
            alpha=alpha,
        )
        if json_path is not None:
            from umed.io.atomic import write_json_atomic

            write_json_atomic(result.to_dict(), json_path)
    console.print(f"verdict: {result.verdict()}", highlight=False, soft_wrap=True)


def _print(console, result) -> None:
    from rich.table import Table

    t = result.test
    table = Table(title="umed verify: the key's rank among control marks of the same family")
    for column in ("answers", "probes", "slots", "key score", "controls mean +- sd", "rank", "effect (sd)", "p"):
        table.add_column(column, no_wrap=True)
    table.add_row(
        "probabilities" if result.soft else "hard masks",
        str(result.probes),
        str(result.slots),
        f"{t.key_score:.4f}",
        f"{t.control_mean:.4f} +- {t.control_sd:.4f}",
        f"{t.rank} of {t.n_controls + 1}",
        f"{t.effect:.2f}",
        f"{t.p_value:.3g}",
    )
    console.print(table)
    console.print(f"verdict: {result.verdict()}")
