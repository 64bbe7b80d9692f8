#!/usr/bin/env python
"""Turn your own Sentinel-2 / Sentinel-1 scenes and a label map into a training set.

Writes 256 x 256 px patches in the SEN12MS / DFC2020 on-disk layout that the three training
scripts read with no other data flag:

    python prepare_dataset.py --s2 S2A_MSIL1C_...SAFE --s1 S1_VV.tif S1_VH.tif \\
        --labels ESA_WorldCover_10m_2021_..._Map.tif --classes worldcover --out data/my_region
    python train_evaluation.py --train_dir data/my_region --val_dir data/my_region ...
    python train_resnet_backbone.py --train_dir data/my_region ...

Sentinel-2: one or more Level-1C products in every form predict.py accepts (SAFE folder or
.zip, band folder, 13-band GeoTIFF); the processing-baseline offset is removed, so the values
are those SEN12MS-trained models saw (uint16, B01..B12 with B8A and B10). Sentinel-1: one
2-band file or two files (VV, VH), dB or --s1_units linear, reprojected onto the S2 grid
(float32 dB). Labels: a raster in any CRS and resolution (nearest or mode onto the 10 m grid,
never interpolated) or GeoJSON polygons; --classes maps their codes onto classes (presets
worldcover, dfc, or a JSON/CSV class file).

Splits come from spatial blocks (--block_size): ROIs0000_validation/ is the training split,
ROIs0000_test/ the validation split, test/ the held-out test split, and no test patch overlaps
a patch of another split, the pre-training list included. dataset.json records the sources,
offsets, CRS, counts per split and class and every skipped patch with its reason;
footprints.png shows the patches over a quicklook. A re-run resumes.
"""
from __future__ import annotations

import argparse
import sys

from utils import cli
from utils.cli import HelpFormatter


class _HelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Real defaults, and the description's layout kept."""


def get_args_parser() -> argparse.ArgumentParser:
    from data.classes import PRESETS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    io = p.add_argument_group("inputs and output")
    io.add_argument("--s2", nargs="+", required=True, metavar="PRODUCT",
                    help="Sentinel-2 Level-1C products: SAFE folders or .zip, band folders (*_B01.jp2 ...) or "
                         "13-band GeoTIFFs; several products of the region (other dates or tiles) are allowed")
    io.add_argument("--s1", nargs="+", default=None, metavar="FILE",
                    help="Sentinel-1: one 2-band file (VV, VH) or two files; reprojected onto each S2 grid. "
                         "Without it the S1 files hold a constant -25 dB placeholder (S2-only models)")
    io.add_argument("--labels", default=None,
                    help="label map: a one-band raster (any CRS and resolution) or GeoJSON polygons "
                         "(.geojson/.json); without it every patch is unlabelled pre-training data")
    io.add_argument("--classes", default=None, metavar="PRESET|FILE",
                    help=f"how label codes become classes: a preset ({', '.join(PRESETS)}: WorldCover 10..100 or "
                         "DFC2020 1..10 onto the paper's 8 DFC classes) or a JSON/CSV class file "
                         "(code,name[,color]); required with --labels")
    io.add_argument("--out", required=True, help="dataset root to write (resumed when it holds the same run)")

    pt = p.add_argument_group("patches and splits")
    pt.add_argument("--patch_size", type=int, default=256, choices=[256],
                    help="side of the patches in px: 256 only, the SEN12MS / DFC2020 size that the training "
                         "scripts read (their --image_px_size crops come from it)")
    pt.add_argument("--stride", type=int, default=256,
                    help="px between neighbouring 256 x 256 px patches (< 256 overlaps them)")
    pt.add_argument("--block_size", type=int, default=1280,
                    help="side of the square spatial blocks, in px of the 10 m grid, that are dealt to the splits")
    pt.add_argument("--split_fractions", type=float, nargs=3, default=(0.7, 0.1, 0.2),
                    metavar=("TRAIN", "VAL", "TEST"), help="share of the blocks per split")
    pt.add_argument("--seed", type=int, default=0, help="seed of the block shuffle")
    pt.add_argument("--min_labelled", type=float, default=0.5,
                    help="least share of labelled pixels in a train/validation/test patch; patches with less "
                         "become unlabelled pre-training data (none from test blocks)")
    pt.add_argument("--max_cloud", type=float, default=0.1, help="largest cloud share of a written patch")
    pt.add_argument("--max_nodata", type=float, default=0.1,
                    help="largest no-data share (S2 band 0, S1 NaN or outside S1) of a written patch")

    pr = p.add_argument_group("products (as predict.py)")
    pr.add_argument("--s2_offset", type=cli.s2_offset, default=None, metavar="auto|DN",
                    help="DN added to every S2 band: default 'auto' reads RADIO_ADD_OFFSET (-1000 since processing "
                         "baseline 04.00) from the SAFE metadata; a number (e.g. -1000 or 0) overrides")
    pr.add_argument("--allow_l2a", action="store_true",
                    help="accept Level-2A (B10 filled from B09, surface reflectance used as top-of-atmosphere)")
    pr.add_argument("--cloud_mask", default="auto", metavar="auto|none|FILE",
                    help="clouds from the product's mask (auto), none, or a mask file (one product only)")
    pr.add_argument("--s1_units", choices=("db", "linear"), default="db", help="units of --s1")
    pr.add_argument("--resampling", choices=("bilinear", "nearest", "cubic"), default="bilinear",
                    help="resampling of 20/60 m S2 bands and of S1 onto the 10 m grid")
    pr.add_argument("--label_resampling", choices=("auto", "nearest", "mode"), default="auto",
                    help="labels onto the grid: nearest (labels as coarse as 10 m or coarser), mode (finer "
                         "labels: the most frequent class of the covered pixels); auto picks by resolution")
    pr.add_argument("--label_property", default="class", help="GeoJSON property holding the class code or name")

    r = p.add_argument_group("run")
    r.add_argument("--overwrite", action="store_true",
                   help="replace a dataset this tool wrote in --out with other settings (never data it did not "
                        "write, never an input)")
    cli.add_bool_flag(r, "--progress", default=True, help="progress bar on a terminal")
    r.add_argument("--debug", action="store_true", help="on an error, show the traceback instead of one line")
    cli.constrain(p, stride=cli.positive_int, block_size=cli.positive_int, min_labelled=cli.unit_interval,
                  max_cloud=cli.unit_interval, max_nodata=cli.unit_interval, split_fractions=cli.unit_interval)
    return p


def main(args) -> dict:
    from preparation.writer import Settings, prepare

    if abs(sum(args.split_fractions) - 1.0) > 1e-6:
        raise cli.UsageError(f"--split_fractions {' '.join(f'{f:g}' for f in args.split_fractions)}: must add up to 1")
    if args.labels and args.split_fractions[0] == 0:
        raise cli.UsageError("--split_fractions: the training fraction must be > 0 when there are --labels")
    settings = Settings(s2=list(args.s2), out=args.out, s1=args.s1, labels=args.labels, classes=args.classes,
                        stride=args.stride, block_size=args.block_size,
                        split_fractions=tuple(args.split_fractions), seed=args.seed, min_labelled=args.min_labelled,
                        max_cloud=args.max_cloud, max_nodata=args.max_nodata, s2_offset=args.s2_offset,
                        allow_l2a=args.allow_l2a, cloud_mask=args.cloud_mask, s1_units=args.s1_units,
                        resampling=args.resampling, label_resampling=args.label_resampling,
                        label_property=args.label_property)
    if not args.s1:
        print("note: no --s1: the Sentinel-1 files hold a constant -25 dB placeholder; train S2-only models "
              "(--s1_input_channels 0)", file=sys.stderr)
    return prepare(settings, overwrite=args.overwrite, progress=None if args.progress else False)


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
