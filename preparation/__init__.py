"""Your own region as a training set: Sentinel-1/2 scenes and a label map -> SEN12MS / DFC2020 layout.

``prepare_dataset.py`` ties the pieces together, one job per module:

* :mod:`preparation.labels`: label maps on the Sentinel-2 grid (a raster in any CRS and
  resolution, nearest or mode, never interpolated; GeoJSON polygons rasterised) and the
  up-front scan of their codes against the class mapping (:mod:`data.classes`).
* :mod:`preparation.scenes`: one Sentinel-2 product with its offset, cloud mask, Sentinel-1 and
  labels on its grid (the readers of :mod:`inference`, as ``predict.py`` uses them).
* :mod:`preparation.splits`: the patch grid and the spatial blocks that decide train /
  validation / test, so that no test patch overlaps a patch of another split.
* :mod:`preparation.writer`: the strip-by-strip pass (bounded memory) that filters, writes and
  records the patches, and resumes an interrupted run.
* :mod:`preparation.records`: ``dataset.json``, the observation lists, ``classes.json`` and the
  footprint figure.
"""
