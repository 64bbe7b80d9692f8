#!/usr/bin/env python
"""Export the S1 / S2 encoders of a checkpoint as timm models (Hugging Face layout) and for TorchGeo.

CHECKPOINT: a published ``swin_t.pth`` / ``resnet50.pth`` / ``resnet18.pth``, a pre-training
checkpoint of this project, or a downstream one (fine-tuned classifiers, SwinUNet: a fine-tuned
backbone is still a backbone). For each encoder (e.g. ``swin_t_s1``, ``swin_t_s2``) it writes

    OUT/<name>/config.json, model.safetensors, README.md   timm / Hub folder with its model card
    OUT/<name>.torchgeo.ckpt                                for TorchGeo's weights=PATH

and checks that timm's model gives the same pooled features as ours. Projection heads,
classifiers and decoders are not exported.

    python export_backbone.py --checkpoint swin_t.pth --out exported/
    python -c 'import timm; timm.create_model("local-dir:exported/swin_t_s2", pretrained=True)'
"""
import argparse
import sys
from pathlib import Path

from utils import cli
from utils.cli import HelpFormatter


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="published, pre-training or downstream checkpoint (.pth)")
    p.add_argument("--out", required=True, help="output folder (one subfolder per encoder)")
    p.add_argument("--sensors", nargs="+", choices=["s1", "s2", "s1s2"], default=None,
                   help="export only these encoders (default: every encoder in the checkpoint)")
    p.add_argument("--img_size", type=int, default=None,
                   help="Swin input size (a multiple of 224; default: the checkpoint's attn_mask, the "
                        "run's record, else 224); ResNets take any size, this only goes into the card")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the exported folders / .torchgeo.ckpt files already in --out "
                        "(nothing else there is touched); without it a non-empty --out is refused")
    p.add_argument("--debug", action="store_true", help="on an error, show the traceback")
    cli.constrain(p, img_size=cli.positive_int)
    return p


def main(args) -> None:
    from models.export import check_out_dir, find_encoders, write_export

    out = Path(args.out)
    if not Path(args.checkpoint).is_file():
        raise cli.UsageError(f"--checkpoint {args.checkpoint}: no such file")
    try:
        check_out_dir(out, args.overwrite)
    except FileExistsError as exc:
        raise cli.UsageError(str(exc)) from None
    try:
        record, encoders = find_encoders(args.checkpoint, img_size=args.img_size, sensors=args.sensors)
    except ValueError as exc:  # a Swin cannot take --img_size
        if args.img_size is None:
            raise
        raise cli.UsageError(f"--img_size {args.img_size}: {exc}") from None
    print(f"{record.file_name}: {record.kind} checkpoint ({record.origin}), sha256 {record.sha256[:16]}...; "
          f"encoders: {', '.join(e.name for e in encoders)}")
    out.mkdir(parents=True, exist_ok=True)
    for encoder in encoders:
        try:
            done = write_export(encoder, record, out, overwrite=args.overwrite, inputs=[args.checkpoint])
        except FileExistsError as exc:
            raise cli.UsageError(str(exc)) from None
        print(f"  {done['name']}: {done['folder']}/ and {done['torchgeo']} "
              f"(img_size {done['img_size']}, features max abs diff {done['max_abs_diff']:.1e}; {done['load']})")
    first = encoders[0].name
    print(f'load: timm.create_model("local-dir:{out / first}", pretrained=True)')


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
