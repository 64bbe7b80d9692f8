"""Pixel areas and the per-class area summary of a prediction (JSON and a text table)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["pixel_area_m2", "area_summary", "format_summary"]


def pixel_area_m2(transform, crs, row_off: int = 0, rows: int = 1) -> np.ndarray:
    """Area (m²) of one pixel in each of ``rows`` rows starting at ``row_off``.

    Projected CRS: ``|det(transform)|`` in CRS units, converted to metres with the CRS's
    linear unit factor (constant over rows). Geographic CRS: the spherical area of the cell
    (authalic radius), which varies with latitude. No CRS: CRS units taken as metres.
    """
    det = abs(transform.a * transform.e - transform.b * transform.d)
    if crs is not None and crs.is_geographic:
        r = 6371007.2
        ys = transform.f + transform.e * (row_off + np.arange(rows + 1, dtype=np.float64))  # north-up rows
        lat = np.radians(np.clip(ys, -90, 90))
        dlon = math.radians(abs(transform.a))
        return (r * r * dlon * np.abs(np.sin(lat[:-1]) - np.sin(lat[1:]))).astype(np.float64)
    factor = 1.0
    if crs is not None:
        try:
            factor = float(crs.linear_units_factor[1])
        except Exception:  # pragma: no cover - exotic CRS
            factor = 1.0
    return np.full(rows, det * factor * factor, dtype=np.float64)



def area_summary(result, **extra) -> dict:
    """Per-class pixel counts and areas (km²) of a :class:`inference.scene.SceneResult`, as a JSON-ready dict
    (each class with its index, name, ``#rrggbb`` colour, pixels, area and share of the valid area)."""
    valid_area = float(result.area_m2.sum())
    classes = []
    colors = list(getattr(result, "class_colors", None) or [])
    for i, name in enumerate(result.class_names):
        a = float(result.area_m2[i])
        classes.append({"index": i, "name": name, **({"color": colors[i]} if i < len(colors) else {}),
                        "pixels": int(result.pixel_counts[i]),
                        "area_km2": a / 1e6, "fraction": (a / valid_area) if valid_area > 0 else 0.0})
    g = result.grid
    px = pixel_area_m2(g.transform, g.crs, 0, 1)[0]
    return {
        "mode": result.mode,
        "crs": g.crs.to_string() if g.crs is not None else None,
        "width": g.width, "height": g.height,
        "transform": list(g.transform)[:6],
        "pixel_area_m2": float(px),
        "classes": classes,
        "valid_pixels": int(result.pixel_counts.sum()),
        "valid_area_km2": valid_area / 1e6,
        "nodata_pixels": int(result.nodata_pixels),
        "nodata_area_km2": result.nodata_area_m2 / 1e6,
        "windows": result.windows, "window": result.window, "stride": result.stride,
        **({"cloud_pixels": int(result.cloud_pixels), "cloud_area_km2": result.cloud_area_m2 / 1e6,
            "cloud_free_area_km2": valid_area / 1e6,
            "cloud_fraction": (result.cloud_area_m2 / (result.cloud_area_m2 + valid_area)
                               if result.cloud_area_m2 + valid_area > 0 else 0.0)}
           if result.cloud_masked else {}),
        **extra,
    }


def format_summary(summary: dict) -> str:
    """The per-class area table of :func:`area_summary` as text."""
    width = max([len(c["name"]) for c in summary["classes"]] + [len("no data"), 5])
    lines = [f"{'class':<{width}}  {'pixels':>12}  {'area km²':>12}  {'share':>7}",
             "-" * (width + 39)]
    for c in summary["classes"]:
        lines.append(f"{c['name']:<{width}}  {c['pixels']:>12d}  {c['area_km2']:>12.4f}  {100 * c['fraction']:>6.2f}%")
    lines.append("-" * (width + 39))
    lines.append(f"{'total':<{width}}  {summary['valid_pixels']:>12d}  {summary['valid_area_km2']:>12.4f}  {100.0:>6.2f}%")
    if "cloud_pixels" in summary:
        lines.append(f"{'clouds':<{width}}  {summary['cloud_pixels']:>12d}  {summary['cloud_area_km2']:>12.4f}  "
                     f"{100 * summary['cloud_fraction']:>6.2f}% of the observed area "
                     f"(cloud-free area mapped: {summary['cloud_free_area_km2']:.4f} km²)")
    lines.append(f"{'no data':<{width}}  {summary['nodata_pixels']:>12d}  {summary['nodata_area_km2']:>12.4f}")
    return "\n".join(lines)

