"""Models: dual ResNet / Swin-T encoders, SimCLR pre-training models, downstream heads, SwinUNet, checkpoint I/O.

Scripts build every model with ``create_model(name, num_classes=8, checkpoint=None, **options)``.
"""
from .base import InputShapeError, SensorModel
from .checkpoint import (
    CheckpointError,
    LoadReport,
    backbone_checkpoint,
    downstream_checkpoint,
    from_published_state_dict,
    load_checkpoint,
    load_downstream_checkpoint,
    load_published_state_dict,
    read_checkpoint,
    save_checkpoint,
    to_published_state_dict,
)
from .downstream import (
    DoubleResNetSimCLRDownstream,
    DoubleSwinTransformerDownstream,
    DoubleSwinTransformerSegmentation,
    DualBaseline,
    DualSwinBaseline,
    ResNetBaseline,
    SwinBaseline,
)
from .factory import (
    COMMON_OPTIONS,
    ModelInfo,
    create_model,
    list_models,
    load_model,
    model_args_from_checkpoint,
    model_info,
    register_model,
)
from .pretrain import DoubleResNetSimCLR, DoubleSwinTransformer
from .resnet import ResNet
from .swin import SwinEncoder, check_swin_img_size
from .swin_unet import SwinUNetDecoder

__all__ = [
    "create_model", "list_models", "model_info", "ModelInfo", "load_model", "model_args_from_checkpoint",
    "register_model", "COMMON_OPTIONS",
    "CheckpointError", "InputShapeError", "LoadReport", "load_checkpoint", "read_checkpoint", "save_checkpoint",
    "backbone_checkpoint", "downstream_checkpoint", "to_published_state_dict", "from_published_state_dict",
    "load_published_state_dict", "load_downstream_checkpoint",
    "SensorModel", "ResNet", "SwinEncoder", "SwinUNetDecoder", "check_swin_img_size",
    "DoubleResNetSimCLR", "DoubleSwinTransformer", "DoubleResNetSimCLRDownstream", "DualBaseline",
    "ResNetBaseline", "SwinBaseline", "DualSwinBaseline", "DoubleSwinTransformerDownstream",
    "DoubleSwinTransformerSegmentation",
]
