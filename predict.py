#!/usr/bin/env python
"""Predict a georeferenced land-cover map of a whole Sentinel-1/2 scene.

Runs a fine-tuned segmentation model (e.g. ``DoubleSwinTransformerSegmentation``) -- or a
classification model -- over a scene of any size with overlapping sliding windows and
writes, on the Sentinel-2 grid (same CRS, transform and size):

* ``--out``: uint8 Cloud-Optimised GeoTIFF of the model's classes (0..K-1, 255 = no data or
  cloud) with overviews (mode resampling), a colour table, the class names as GDAL category
  names and a raster attribute table (in the ``.aux.xml`` sidecar) and as tags (``CLASS_NAMES``,
  ``CLASS_COLORS``, ``CLASS_i``), and the model, checkpoint, S2 offset and software version as
  tags. Names and colours are the ones the checkpoint records (``train_evaluation.py`` stores
  the dataset's classes); older checkpoints get the 8 DFC classes (``class_i`` for other counts);
* ``--probabilities``: optional COG, one band per class: uint8 with scale 1/255 (255 = no
  data) or float32 (NaN = no data) with ``--probabilities_dtype float32``;
* ``--preview``: optional PNG with a legend;
* ``--summary``: optional JSON of per-class areas (km², cloud-free area) with the class names and
  colours; the table is always printed.

Inputs: ``--s2`` is a Sentinel-2 SAFE product (folder or ``.zip``; bands from
``GRANULE/*/IMG_DATA``, metadata from ``MTD_MSIL1C.xml``), a 13-band GeoTIFF (B01..B12 incl.
B8A and B10, L1C digital numbers) or a folder of per-band files (``*_B01.jp2`` /
``*_B01.tif`` ... at 10/20/60 m); bands are resampled (``--resampling``, bilinear by default)
onto the grid of a 10 m band and stacked in band order. Products of processing baseline
04.00 and later (since 25 January 2022) carry an offset of -1000 DN, which is read from the
metadata and removed before the windows are normalised (``--s2_offset`` for inputs without
metadata). Level-2A products are refused unless ``--allow_l2a``. ``--cloud_mask auto`` writes
the pixels the product's cloud mask flags as 255. ``--s1`` is one 2-band file (VV, VH) or two
files (VV, VH) in dB or, with ``--s1_units linear``, linear backscatter, reprojected onto the
S2 grid when its grid differs; it is required when the model uses Sentinel-1.

Every window is normalised exactly as in training (clipping, division of each band by its
maximum within the window). Segmentation outputs are blended with a smooth weight window
(no seams); a classification model's label of each window is painted over its stride cell.
Memory use is bounded by a strip of windows, not by the scene (details:
``inference/scene.py``).

Example::

    python predict.py --checkpoint runs/seg/best.pt --s2 S2_scene.tif --s1 S1_scene.tif \\
        --out map.tif --preview map.png --summary summary.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from utils import cli  # argparse helpers only: --help stays fast (the script's folder is on sys.path)


class _HelpFormatter(cli.HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The training scripts' formatter (real defaults) that keeps the description's layout."""


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("--checkpoint", required=True,
                    help="downstream checkpoint saved by this project ({'model_weights', 'model_name', "
                         "'model_options', ...}) or by the original implementation ({'model_weights', ...}, "
                         "then --model is needed)")
    io.add_argument("--s2", required=True,
                    help="Sentinel-2 scene: a SAFE product (folder or .zip, Level-1C), a 13-band GeoTIFF "
                         "(B01..B12 incl. B8A, B10) or a folder of per-band files *_B01.jp2|tif ... *_B12 "
                         "(10/20/60 m, resampled onto the 10 m grid)")
    io.add_argument("--s1", nargs="+", default=None, metavar="FILE",
                    help="Sentinel-1 covering the scene: one 2-band file (VV, VH) or two files (VV, VH; told "
                         "apart by 'vv'/'vh' in their names, else in this order); reprojected onto the S2 grid "
                         "if needed. Required when the model uses Sentinel-1")
    io.add_argument("--out", required=True,
                    help="output land-cover Cloud-Optimised GeoTIFF (uint8, 255 = no data or cloud)")
    io.add_argument("--probabilities", default=None,
                    help="optional Cloud-Optimised GeoTIFF with one class-probability band per class")
    io.add_argument("--preview", default=None, help="optional PNG preview with a legend")
    io.add_argument("--summary", default=None, help="optional JSON file with the per-class area summary")

    pr = p.add_argument_group("products")
    pr.add_argument("--s2_offset", type=cli.s2_offset, default="auto", metavar="auto|DN",
                    help="DN added to every S2 band before clipping: 'auto' reads RADIO_ADD_OFFSET (-1000 since "
                         "processing baseline 04.00) from the SAFE metadata and applies none, with a warning, "
                         "when the baseline cannot be known; a number (e.g. -1000 or 0) overrides")
    pr.add_argument("--allow_l2a", action="store_true",
                    help="accept a Level-2A product with an approximation: B10 filled from B09, surface "
                         "reflectance used as top-of-atmosphere (BOA_ADD_OFFSET applied); less accurate")
    pr.add_argument("--cloud_mask", default="auto", metavar="auto|none|FILE",
                    help="write cloudy pixels as 255: 'auto' uses the product's MSK_CLASSI_B00.jp2 (baseline "
                         ">= 04.00) or MSK_CLOUDS_B00.gml (older) when there is one; 'none'; or a mask file "
                         "(MSK_CLASSI, GML, QA60 or non-zero = cloud). Not applied for S1-only models")
    pr.add_argument("--s1_units", choices=("db", "linear"), default="db",
                    help="units of --s1: dB (as in training) or linear backscatter (converted to dB)")
    pr.add_argument("--probabilities_dtype", choices=("uint8", "float32"), default="uint8",
                    help="--probabilities as uint8 (value / 255, 255 = no data) or float32 (NaN = no data)")

    m = p.add_argument_group("model")
    m.add_argument("--model", default=None,
                   help="factory model name (models.create_model); default: the 'model_name' recorded in "
                        "the checkpoint")
    m.add_argument("--n_classes", "--num_classes", dest="num_classes", type=int, default=None,
                   help="number of classes of the model (default: recorded in the checkpoint, else 8)")
    m.add_argument("--model_option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra/overriding models.create_model option (JSON value), e.g. "
                        "--model_option base_model='\"resnet50\"' or --model_option s1_input_channels=0; "
                        "default: the 'model_options' recorded in the checkpoint")

    w = p.add_argument_group("sliding windows")
    w.add_argument("--window", type=int, default=None,
                   help="window size in px (default: the model's img_size option if recorded, else 224)")
    w.add_argument("--overlap", type=float, default=0.25,
                   help="fraction of overlap between neighbouring windows; 0.25 computes each pixel about twice "
                        "and left no measurable seams (README, benchmarks/scene.py), 0.5 about 4 times, "
                        "0 once but with visible seams")
    w.add_argument("-b", "--batch_size", "--batch-size", dest="batch_size", type=int, default=8,
                   help="windows per forward pass")
    w.add_argument("--blend", choices=("probabilities", "logits"), default="probabilities",
                   help="blend softmax probabilities or raw logits of overlapping windows")
    w.add_argument("--resampling", choices=("bilinear", "nearest", "cubic"), default="bilinear",
                   help="resampling of 20/60 m S2 bands and of an S1 file on another grid")
    w.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda if available)")
    w.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="forward pass in fp32 or under bf16 autocast; auto: bf16 where the device runs it natively "
                        "(CUDA compute capability >= 8.0, CPUs with avx512_bf16/amx_bf16), else fp32. Recorded in "
                        "the map's PRECISION tag (docs/performance.md)")
    cli.add_bool_flag(w, "--progress", default=True, help="progress bar on stderr (--no_progress: old spelling "
                                                           "of --no-progress)")
    w.add_argument("--no_progress", dest="progress", action="store_false", help=argparse.SUPPRESS)

    s = p.add_argument_group("safety")
    s.add_argument("--overwrite", action="store_true",
                   help="replace outputs that already exist (--out, --probabilities, --preview, --summary); "
                        "without it an existing file is refused. An input is never written")
    s.add_argument("--debug", action="store_true", help="on an error, show the Python traceback instead of one line")
    cli.constrain(p, batch_size=cli.positive_int, overlap=cli.probability, window=cli.positive_int,
                  num_classes=cli.positive_int)
    return p


def resolve_device(name: str):
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    return dev


def _parse_options(items):
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"error: --model_option {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def read_downstream_checkpoint(path):
    """Read a checkpoint dict on the CPU (``models.read_checkpoint``: tensors-only first), one-line errors."""
    from models import read_checkpoint
    try:
        obj, _ = read_checkpoint(path)
    except FileNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from None
    except Exception as exc:
        raise SystemExit(f"error: cannot read checkpoint {path}: {exc}") from None
    return obj


def build_model(ckpt, path, model_name=None, num_classes=None, extra_options=None):
    """Build the model recorded in (or named for) a downstream checkpoint and load its weights.

    As ``models.load_model``: ``models.model_args_from_checkpoint`` resolves the name, class count
    and options, ``models.create_model(name, num_classes, checkpoint=ckpt, **options)`` builds and
    loads, so checkpoints of the original implementation (``--model`` needed) load as in training.
    Returns ``(model, name, options)``.
    """
    import models

    if not isinstance(ckpt, dict):
        raise SystemExit(f"error: {path}: not a checkpoint dictionary")
    if "model_weights" not in ckpt:
        raise SystemExit(f"error: {path} has no 'model_weights': predict.py needs a fine-tuned downstream "
                         "checkpoint (a pre-training backbone such as swin_t.pth has no classifier/decoder)")
    recorded_name = ckpt.get("model_name")
    if not (model_name or recorded_name):
        raise SystemExit(f"error: {path} does not record the model; pass --model NAME "
                         "(e.g. DoubleSwinTransformerSegmentation)")
    if model_name is not None and recorded_name is not None and model_name != recorded_name:
        print(f"warning: --model {model_name} differs from the checkpoint's model_name {recorded_name}; "
              "its model_options are not used", file=sys.stderr)
    name, num_classes, options = models.model_args_from_checkpoint(ckpt, model_name, num_classes,
                                                                   **(extra_options or {}))
    options["freeze_backbone"] = False  # irrelevant for inference
    try:
        model = models.create_model(name, num_classes=num_classes, checkpoint=ckpt, **options)
    except Exception as exc:  # unknown name/option, or weights that do not fit (CheckpointError)
        raise SystemExit(f"error: cannot build {name} (num_classes={num_classes}, options {options}) "
                         f"from {path}: {exc}") from None
    return model, name, options


def map_classes(ckpt, model, path):
    """Names and colours of the map's classes (:func:`inference.classes.checkpoint_classes`: the
    checkpoint's ``classes``, else the DFC / ``class_i`` defaults), or None when the model does not
    say how many outputs it has (the defaults then apply)."""
    from data.errors import DatasetError
    from inference.classes import checkpoint_classes

    n = (getattr(model, "model_options", None) or {}).get("num_classes")
    if n is None:
        return None
    try:
        classes = checkpoint_classes(ckpt, int(n), source=str(path))
    except DatasetError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(classes.note, file=sys.stderr)
    return classes


OUTPUT_FLAGS = (("--out", "out"), ("--probabilities", "probabilities"), ("--preview", "preview"),
                ("--summary", "summary"))


def _same_file(a, b) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.abspath(a) == os.path.abspath(b)


def check_outputs(args) -> None:
    """Refuse (one line, before anything is read or written) an output that is one of the inputs,
    lies in an input folder as an existing file, is given twice, or exists without ``--overwrite``."""
    inputs = [("--s2", args.s2), *(("--s1", p) for p in args.s1 or []), ("--checkpoint", args.checkpoint)]
    seen = {}
    for flag, dest in OUTPUT_FLAGS:
        path = getattr(args, dest)
        if not path:
            continue
        path = str(path)
        for in_flag, in_path in inputs:
            in_path = str(in_path)
            inside = (os.path.isdir(in_path) and os.path.isfile(path)
                      and os.path.commonpath([os.path.realpath(path), os.path.realpath(in_path)])
                      == os.path.realpath(in_path))
            if _same_file(path, in_path) or inside:
                what = "is" if not inside else "is a file of"
                raise SystemExit(f"error: {flag} {path} {what} the {in_flag} input; write the output to "
                                 "another file (an input is never overwritten, not even with --overwrite)")
        key = os.path.realpath(path)
        if key in seen:
            raise SystemExit(f"error: {flag} {path} is also given as {seen[key]}; give each output its own file")
        seen[key] = flag
        if os.path.exists(path) and not args.overwrite:
            raise SystemExit(f"error: {flag} {path} already exists; pass --overwrite to replace it")


@dataclass
class LoadedModel:
    """The model of ``--checkpoint`` on its device, with what the run needs to know about it."""

    model: object
    name: str
    options: dict
    classes: object            # inference.classes.MapClasses, or None for the defaults
    window: int
    uses_s1: bool
    uses_s2: bool


@dataclass
class SceneInputs:
    """The opened inputs on the Sentinel-2 grid: S2 (offset applied), S1, cloud mask; :meth:`close` closes them."""

    s2: object
    product: object
    offset: object            # inference.offset.OffsetDecision
    s1: object = None
    cloud: object = None
    cloud_line: str = ""

    def close(self) -> None:
        for src in (self.s2, self.s1, self.cloud):
            if src is not None:
                src.close()


def main(argv=None) -> int:
    """Parse ``argv`` and predict; errors raise ``SystemExit("error: ...")`` (one line)."""
    return predict(get_args_parser().parse_args(argv))


def predict(args, timings: dict | None = None) -> int:
    """The whole run for parsed arguments (see :func:`get_args_parser`).

    ``timings``: optional dict that receives the seconds of each phase (``predict_scene``'s
    ``read``, ``normalise``, ``inference``, ``blend``, ``write``, and ``cog``: the COG rewrite)."""
    from inference import products
    from utils.hardware import resolve_precision

    check_outputs(args)
    device = resolve_device(args.device)
    try:   # the product first: an L2A refusal or a missing band is reported before the model loads
        s2, product = products.open_s2_product(args.s2, resampling=args.resampling, allow_l2a=args.allow_l2a)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    try:
        precision, precision_line = resolve_precision(args.precision, device)
        loaded = load_model(args, device)
        inputs = open_inputs(args, s2, product, loaded)
    except BaseException:
        s2.close()
        raise
    try:
        g = inputs.s2.grid
        print(f"scene {g.width} x {g.height} px, CRS {g.crs}, model {loaded.name} on {device}, "
              f"window {loaded.window}, overlap {args.overlap}", file=sys.stderr)
        print(precision_line, file=sys.stderr)
        result = map_scene(args, loaded, inputs, build_tags(args, loaded, inputs, precision), device, precision,
                           timings)
    finally:
        inputs.close()
    write_reports(args, loaded, inputs, result)
    return 0


def load_model(args, device) -> LoadedModel:
    """Read ``--checkpoint``, build its model (``--model``, ``--model_option``) and its classes."""
    ckpt = read_downstream_checkpoint(args.checkpoint)
    model, name, options = build_model(ckpt, args.checkpoint, args.model, args.num_classes,
                                       _parse_options(args.model_option))
    classes = map_classes(ckpt, model, args.checkpoint)
    del ckpt
    model.to(device)
    loaded = LoadedModel(model, name, options, classes, window=args.window or int(options.get("img_size") or 224),
                         uses_s1=int(options.get("s1_input_channels", 2)) > 0,
                         uses_s2=int(options.get("s2_input_channels", 13)) > 0)
    if loaded.uses_s1 and args.s1 is None:
        raise SystemExit(f"error: model {name} uses Sentinel-1 (s1_input_channels="
                         f"{options.get('s1_input_channels', 2)}); pass --s1 S1.tif (for a checkpoint of an "
                         "S2-only model that does not record its options: --model_option s1_input_channels=0)")
    return loaded


def open_inputs(args, s2, product, loaded: LoadedModel) -> SceneInputs:
    """The product's offset (``--s2_offset``), ``--s1`` on the S2 grid and the cloud mask; notes on stderr.

    On an error everything opened here is closed again (``s2`` stays the caller's)."""
    from inference.clouds import open_cloud_mask
    from inference.offset import OffsetSource, decide_offset
    from inference.sentinel1 import open_s1_inputs

    for note in product.notes:
        print(f"note: {note}", file=sys.stderr)
    offset = decide_offset(product, args.s2_offset)
    print(offset.message, file=sys.stderr)
    if offset.warning:
        print(f"warning: {offset.warning}", file=sys.stderr)
    inputs = SceneInputs(s2 if offset.is_identity else OffsetSource(s2, offset.offsets, offset.scale), product, offset)
    try:
        if args.s1 is not None:
            if not loaded.uses_s1:
                print(f"note: model {loaded.name} does not use Sentinel-1; {' '.join(args.s1)} only masks no-data",
                      file=sys.stderr)
            inputs.s1 = open_s1_inputs(args.s1, s2.grid, units=args.s1_units, resampling=args.resampling,
                                       reference_name=f"Sentinel-2 input {args.s2}")
            if getattr(inputs.s1, "warped", False):
                print(f"note: {' '.join(args.s1)} is on another grid; reprojected onto the Sentinel-2 grid "
                      f"({args.resampling})", file=sys.stderr)
        if not loaded.uses_s2:
            print(f"note: model {loaded.name} does not use Sentinel-2; {args.s2} defines the grid and the "
                  "no-data mask; no cloud mask (radar sees through clouds)", file=sys.stderr)
            inputs.cloud_line = "cloud mask: none (S1-only model)"
        else:
            inputs.cloud, inputs.cloud_line = open_cloud_mask(product, s2.grid, args.cloud_mask)
        print(inputs.cloud_line, file=sys.stderr)
    except (OSError, ValueError) as exc:
        inputs.close()
        raise SystemExit(f"error: {exc}") from None
    except BaseException:
        inputs.close()
        raise
    return inputs


def build_tags(args, loaded: LoadedModel, inputs: SceneInputs, precision: str) -> dict:
    """The map's GeoTIFF tags: model, checkpoint, sources, offset, product, cloud mask, precision, version."""
    from inference import software_version

    product, offset = inputs.product, inputs.offset
    tags = {"MODEL": loaded.name, "MODEL_OPTIONS": json.dumps(loaded.options, default=str),
            "CHECKPOINT": str(Path(args.checkpoint).name), "S2_SOURCE": str(args.s2),
            "S1_SOURCE": " ".join(args.s1 or []), "S1_UNITS": args.s1_units if args.s1 else "",
            "BLEND": args.blend, "OVERLAP": str(args.overlap), "PRECISION": precision,
            "S2_OFFSET": offset.tag(), "S2_OFFSET_SOURCE": offset.source,
            "PROCESSING_BASELINE": product.baseline or "unknown", "PRODUCT_LEVEL": product.level or "unknown",
            "CLOUD_MASK": inputs.cloud_line, "SOFTWARE_VERSION": software_version(),
            "TIFFTAG_SOFTWARE": f"predict.py ({software_version()})"}
    if loaded.classes is not None and loaded.classes.scheme:
        tags["CLASS_SCHEME"] = loaded.classes.scheme
    if product.level == "L2A":
        tags["L2A_APPROXIMATION"] = "B10 filled from B09; surface reflectance used as top-of-atmosphere"
    return tags


def map_scene(args, loaded: LoadedModel, inputs: SceneInputs, tags: dict, device, precision: str,
              timings: dict | None = None):
    """Run the sliding windows into temporary files, then write ``--out`` (and ``--probabilities``) as COGs.

    Nothing is left at the output paths when the run fails or is interrupted."""
    from inference import writer
    from inference.classes import class_colors_rgb
    from inference.scene import predict_scene

    classes = loaded.classes
    tmp_out = writer.tmp_path_for(args.out)
    tmp_prob = writer.tmp_path_for(args.probabilities) if args.probabilities else None
    try:
        try:
            result = predict_scene(loaded.model, inputs.s2, inputs.s1, out_path=tmp_out, probabilities_path=tmp_prob,
                                   window=loaded.window, overlap=args.overlap, batch_size=args.batch_size,
                                   device=device, blend=args.blend, progress=args.progress,
                                   tags=tags, cloud_mask=inputs.cloud, probabilities_dtype=args.probabilities_dtype,
                                   class_names=classes and classes.names, colors=classes and classes.colors,
                                   precision=precision, timings=timings)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"error: {exc}") from None
        start = time.perf_counter()
        writer.to_cog(tmp_out, args.out, resampling="mode")
        writer.write_categories(args.out, result.class_names,
                                class_colors_rgb(result.num_classes, result.class_colors))
        result.outputs["map"] = str(args.out)
        if tmp_prob:
            writer.to_cog(tmp_prob, args.probabilities, resampling="average")
            result.outputs["probabilities"] = str(args.probabilities)
        if timings is not None:
            timings["cog"] = timings.get("cog", 0.0) + time.perf_counter() - start
    finally:
        for tmp in (tmp_out, tmp_prob):
            if tmp and os.path.exists(tmp):
                os.remove(tmp)
    return result


def write_reports(args, loaded: LoadedModel, inputs: SceneInputs, result) -> None:
    """The area table (printed, and ``--summary``) and the ``--preview`` PNG."""
    from inference.areas import area_summary, format_summary
    from inference.preview import write_preview

    classes = loaded.classes
    summary = area_summary(result, model=loaded.name, checkpoint=str(args.checkpoint), s2=str(args.s2),
                           s1=args.s1, s2_offset=inputs.offset.tag(), s2_offset_source=inputs.offset.source,
                           processing_baseline=inputs.product.baseline, cloud_mask=inputs.cloud_line,
                           class_scheme=classes and classes.scheme, outputs=result.outputs)
    print(f"{result.mode} map written to {args.out}")
    print(format_summary(summary))
    if args.summary:
        Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=2)
        print(f"summary written to {args.summary}")
    if args.preview:
        write_preview(args.out, args.preview, class_names=result.class_names, colors=result.class_colors,
                      title=f"{Path(args.out).name}: {loaded.name} ({result.mode})")
        print(f"preview written to {args.preview}")


def _cli_main(args) -> int:
    try:
        return predict(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("\ninterrupted; outputs not finished are not written", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    sys.exit(cli.run(_cli_main, get_args_parser()))
