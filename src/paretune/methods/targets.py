"""What peft is told: which modules a method wraps, which it trains in full (the head), the task.

Methods name the *roles* they adapt (`query`, `value`, `ffn_output`, ...), and this module turns
roles into the full module names of the model at hand. Resolution goes by module names, not by
`model_type`: the first family whose every role matches a module wins, so relatives that share
a naming scheme (RoBERTa, XLM-R and ELECTRA share BERT's; Mistral and Qwen share Llama's) work
unchanged. `method.target_modules` overrides the defaults with module-name suffixes, matched as
peft matches them (`value` matches `...attention.self.value`).

Full names, not suffixes, go to peft: a BERT suffix like `output.dense` would also catch
`attention.output.dense`, which is the wrong module for IA3's feed-forward scaling and for
Pfeiffer adapters.
"""
from __future__ import annotations

import re
import warnings

import torch

from paretune.errors import ParetuneError

ROLES = ("query", "key", "value", "attention_output", "ffn_input", "ffn_output")

# Family -> role -> regex for the end of a module name. Fused projections (GPT-2's c_attn,
# DeBERTa-v1's in_proj) serve as query, key and value at once.
FAMILIES: dict[str, dict[str, str]] = {
    "bert": {  # BERT, RoBERTa, XLM-R, ELECTRA, DeBERTa-v2/v3 (query_proj)
        "query": r"attention\.self\.query(_proj)?",
        "key": r"attention\.self\.key(_proj)?",
        "value": r"attention\.self\.value(_proj)?",
        "attention_output": r"attention\.output\.dense",
        "ffn_input": r"intermediate\.dense",
        "ffn_output": r"layer\.\d+\.output\.dense",
    },
    "vit": {  # ViT and DeiT image transformers (transformers 5 names)
        "query": r"attention\.q_proj",
        "key": r"attention\.k_proj",
        "value": r"attention\.v_proj",
        "attention_output": r"attention\.o_proj",
        "ffn_input": r"mlp\.fc1",
        "ffn_output": r"mlp\.fc2",
    },
    "deberta": {
        "query": r"attention\.self\.in_proj",
        "key": r"attention\.self\.in_proj",
        "value": r"attention\.self\.in_proj",
        "attention_output": r"attention\.output\.dense",
        "ffn_input": r"intermediate\.dense",
        "ffn_output": r"layer\.\d+\.output\.dense",
    },
    "distilbert": {
        "query": r"attention\.q_lin",
        "key": r"attention\.k_lin",
        "value": r"attention\.v_lin",
        "attention_output": r"attention\.out_lin",
        "ffn_input": r"ffn\.lin1",
        "ffn_output": r"ffn\.lin2",
    },
    "gpt2": {
        "query": r"attn\.c_attn",
        "key": r"attn\.c_attn",
        "value": r"attn\.c_attn",
        "attention_output": r"attn\.c_proj",
        "ffn_input": r"mlp\.c_fc",
        "ffn_output": r"mlp\.c_proj",
    },
    "llama": {  # Llama, Mistral, Qwen2/3, Gemma, SmolLM, OLMo
        "query": r"self_attn\.q_proj",
        "key": r"self_attn\.k_proj",
        "value": r"self_attn\.v_proj",
        "attention_output": r"self_attn\.o_proj",
        "ffn_input": r"mlp\.(gate|up)_proj",
        "ffn_output": r"mlp\.down_proj",
    },
}


def projection_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Every module with a 2-D weight (nn.Linear, GPT-2's Conv1D), by full name."""
    return {
        name: module for name, module in model.named_modules()
        if isinstance(getattr(module, "weight", None), torch.Tensor) and module.weight.ndim == 2
        and not isinstance(module, torch.nn.Embedding)
    }


def pointwise_convs(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """1x1 convolutions (groups 1) of a convolutional network, outside its head: the channel-mixing
    projections of ResNet / EfficientNet blocks, and the conv layers peft's LoRA wraps and merges."""
    heads = tuple(head_modules(model))
    return {
        name: module for name, module in model.named_modules()
        if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1
        and not name.startswith(heads)
    }


def _matching(names, pattern: str) -> list[str]:
    regex = re.compile(rf"(^|\.){pattern}$")
    return [name for name in names if regex.search(name)]


def family(model: torch.nn.Module) -> str | None:
    names = list(projection_layers(model))
    for key, roles in FAMILIES.items():
        if all(_matching(names, pattern) for pattern in roles.values()):
            return key
    return None


def resolve(model: torch.nn.Module, roles: tuple[str, ...], override: list[str] | None = None) -> list[str]:
    """Full names of the modules to wrap: `override` suffixes if given, else the roles' defaults."""
    names = list(projection_layers(model)) + list(pointwise_convs(model))
    if override is not None:
        if not override:
            raise ParetuneError("method.target_modules is empty: name some layers, or leave it out")
        found = []
        for suffix in override:
            matched = [n for n in names if n == suffix or n.endswith("." + suffix)]
            if not matched:
                raise ParetuneError(
                    f"method.target_modules: no linear layer of {type(model).__name__} is named "
                    f"'{suffix}'; layer names in its first block: {', '.join(block_layer_names(model))}"
                )
            found += matched
        return sorted(set(found), key=names.index)
    key = family(model)
    if key is None and pointwise_convs(model):  # a conv net: its 1x1 convolutions play the projections
        return list(pointwise_convs(model))
    if key is None:
        raise ParetuneError(
            f"no default target modules for {type(model).__name__} "
            f"(known naming schemes: {', '.join(FAMILIES)}); set method.target_modules to some of "
            f"the layer names in its first block: {', '.join(block_layer_names(model))}"
        )
    found = {n for role in roles for n in _matching(names, FAMILIES[key][role])}
    return [n for n in names if n in found]


def resolve_all_linear(model: torch.nn.Module) -> list[str]:
    """Every projection inside the transformer blocks (not the embeddings, pooler or head)."""
    from paretune.methods.layers import transformer_blocks

    inside = {id(m) for block in transformer_blocks(model) for m in block.modules()}
    return [name for name, module in projection_layers(model).items() if id(module) in inside]


def block_layer_names(model: torch.nn.Module) -> list[str]:
    """Names of the projections of the first transformer block, relative to the block: for messages."""
    from paretune.methods.layers import transformer_blocks

    try:
        first = transformer_blocks(model)[0]
    except (ValueError, IndexError):
        return sorted({n.rsplit(".", 1)[-1] for n in projection_layers(model)})
    return list(projection_layers(first))


def transposed(model: torch.nn.Module, names: list[str]) -> bool:
    """Whether the layers store their weight transposed (GPT-2's Conv1D): peft must know to merge."""
    from transformers.pytorch_utils import Conv1D

    modules = dict(model.named_modules())
    return any(isinstance(modules[n], Conv1D) for n in names)


def head_modules(model: torch.nn.Module) -> list[str]:
    """The task head: top-level children outside the pretrained body that hold parameters.

    BERT has `classifier`; DistilBERT `pre_classifier` and `classifier`; DeBERTa `pooler` and
    `classifier`; GPT-2 and Llama `score`. All are freshly initialised, so all must train and be
    saved with any adapter.

    BERT-style bodies also hold a pooler (dense + tanh over the first token) that feeds the
    classifier. It was trained for next-sentence prediction, if at all: sentence-embedding models
    such as all-MiniLM-L6-v2 were trained on mean-pooled tokens and never tuned it. Frozen, it
    left methods that barely move the body (AdaLoRA's first steps, IA3, prompt tuning) reading a
    near-random feature (SST-2 at chance), so it trains with the head: 148k parameters on MiniLM.
    """
    if getattr(model, "base_model", None) is model:  # a body without a head (AutoModel): nothing new to train
        return []
    body = getattr(model, "base_model_prefix", "")
    # A language model's head (lm_head) is pretrained, often tied to the embeddings: not a new head.
    lm_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    heads = [
        name for name, child in model.named_children()
        if name != body and child is not lm_head and any(True for _ in child.parameters())
    ]
    pooler = getattr(getattr(model, body, None), "pooler", None)
    if isinstance(getattr(pooler, "dense", None), torch.nn.Linear):
        # The Linear itself, not BertPooler: peft's IA3 merge cannot unwrap a module_to_save
        # that has no weight of its own.
        heads.append(f"{body}.pooler.dense")
    elif isinstance(pooler, torch.nn.Module) and any(True for _ in pooler.parameters()):
        heads.append(f"{body}.pooler")
    return heads


def peft_task_type(task_type: str) -> str:
    """peft's task type for a paretune task: it decides how peft wraps the model's forward."""
    from paretune.tasks import task_class

    return task_class(task_type).peft_task_type


def wrap_with_peft(model: torch.nn.Module, peft_config) -> torch.nn.Module:
    """get_peft_model, with peft's complaints about the model turned into user errors."""
    import peft

    from paretune.methods.peft_compat import accept_past_key_values

    try:
        with warnings.catch_warnings():
            # peft's PeftModel.__init__ reads transformers' deprecated `is_gradient_checkpointing`
            # (transformers 5.x FutureWarning): nothing the user can act on, once per PEFT run.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return accept_past_key_values(peft.get_peft_model(model, peft_config))
    except ValueError as err:
        kind = peft_config.peft_type.value
        raise ParetuneError(f"cannot apply {kind} to {type(model).__name__}: {err}") from None


def check_virtual_positions(model: torch.nn.Module, num_virtual_tokens: int, context) -> None:
    """Prompt and p-tuning prepend tokens: they and the longest input must fit the positions."""
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is None or context.max_length is None:
        return
    if context.max_length + num_virtual_tokens > positions:
        raise ParetuneError(
            f"data.max_length ({context.max_length}) + method.num_virtual_tokens ({num_virtual_tokens}) "
            f"= {context.max_length + num_virtual_tokens} exceeds the model's {positions} positions: "
            f"lower data.max_length to {positions - num_virtual_tokens} or use fewer virtual tokens"
        )
