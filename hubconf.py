"""torch.hub entry points (the DINO / MoCo convention); nothing is ever downloaded.

    import torch
    torch.hub.list("path/to/this/repository", source="local")
    s2 = torch.hub.load("path/to/this/repository", "swin_t_s2", source="local", weights="swin_t.pth")
    dual = torch.hub.load("path/to/this/repository", "dual_swin_t", source="local", weights="swin_t.pth")

Encoders (``swin_t_s1`` ... ``resnet18_s2``) are timm models without classifier (``model(x)``: pooled
features; ``num_classes=K`` adds a fresh head, other keywords go to ``timm.create_model``). Their
``weights``: a published ``swin_t.pth`` / ``resnet50.pth`` / ``resnet18.pth``, a pre-training or
downstream checkpoint of this project, or what ``export_backbone.py`` wrote (the folder, its
``model.safetensors``, the ``.torchgeo.ckpt``); None: random initialisation. Inputs are normalised
with ``data.normalize_s1`` / ``data.normalize_s2``.

Dual models (``dual_swin_t``, ``dual_resnet50``, ``dual_resnet18``: classifiers;
``dual_swin_t_segmentation``: SwinUNet) are this project's classes and take the batch dict
``{"s1": (B, 2, H, W), "s2": (B, 13, H, W)}``; ``weights``: a published or pre-training
checkpoint (backbones loaded, head fresh) or a downstream one (everything loaded).
"""
dependencies = ["torch", "timm"]


def _encoder_entry(arch: str, sensor: str):
    def entry(weights=None, **kwargs):
        from models.export import load_encoder

        return load_encoder(weights, arch, sensor, **kwargs)

    bands = {"s1": "Sentinel-1 (VV, VH in dB, 2 bands)", "s2": "Sentinel-2 L1C (13 bands)"}[sensor]
    entry.__name__ = entry.__qualname__ = f"{arch}_{sensor}"
    entry.__doc__ = (f"{arch} encoder for {bands} as a timm model; ``weights``: a published, pre-training, "
                     "downstream or exported checkpoint (None: random init); ``kwargs`` go to timm.create_model.")
    return entry


def _dual(name: str, weights, num_classes, options):
    from models import create_model, load_checkpoint, model_args_from_checkpoint, read_checkpoint

    if weights is None:
        return create_model(name, num_classes=8 if num_classes is None else num_classes, **options)
    obj, source = read_checkpoint(weights)
    if obj.get("model_name") == name:  # a downstream checkpoint of ours: its recorded classes and options
        name, num_classes, options = model_args_from_checkpoint(obj, num_classes=num_classes, **options)
    model = create_model(name, num_classes=8 if num_classes is None else num_classes, **options)
    model.load_report = load_checkpoint(model, obj, source=source)
    return model


swin_t_s1 = _encoder_entry("swin_t", "s1")
swin_t_s2 = _encoder_entry("swin_t", "s2")
resnet50_s1 = _encoder_entry("resnet50", "s1")
resnet50_s2 = _encoder_entry("resnet50", "s2")
resnet18_s1 = _encoder_entry("resnet18", "s1")
resnet18_s2 = _encoder_entry("resnet18", "s2")


def dual_swin_t(weights=None, num_classes=None, **options):
    """DoubleSwinTransformerDownstream: the S1 and S2 Swin-T encoders, pooled features concatenated, a
    linear head (``num_classes``: 8, or a downstream checkpoint's). ``options``: create_model's."""
    return _dual("DoubleSwinTransformerDownstream", weights, num_classes, options)


def dual_resnet50(weights=None, num_classes=None, **options):
    """DoubleResNetSimCLRDownstream with ResNet-50 encoders (S1, S2) and a linear head."""
    return _dual("DoubleResNetSimCLRDownstream", weights, num_classes, {"base_model": "resnet50", **options})


def dual_resnet18(weights=None, num_classes=None, **options):
    """DoubleResNetSimCLRDownstream with ResNet-18 encoders (S1, S2) and a linear head."""
    return _dual("DoubleResNetSimCLRDownstream", weights, num_classes, {"base_model": "resnet18", **options})


def dual_swin_t_segmentation(weights=None, num_classes=None, **options):
    """DoubleSwinTransformerSegmentation: two Swin-T encoders with SwinUNet decoders, per-pixel logits."""
    return _dual("DoubleSwinTransformerSegmentation", weights, num_classes, options)
