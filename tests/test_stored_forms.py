"""Every stored model form in the registry (paretune.stored), held to the same properties.

One tiny classifier is trained per module. Each case turns it, in memory, into one stored form
(a compression method, or a fine-tuning method saved the way training saves it), writes it into
a copy of the run through the registry, reloads it through `Predictor` (the path the CLI, the
server and bench-infer use), and checks: the same labels as in memory, logits within the form's
tolerance, and model/paretune.json records the form the registry then reports. A case list that
misses a registered form fails, so a new form comes with its case here.
"""
from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from conftest import sentiment_rows, write_csv
from safetensors.torch import load_file, save_file

import paretune
from paretune import Predictor, stored
from paretune.compression import METHODS as COMPRESSION_METHODS
from paretune.compression.base import CompressContext
from paretune.compression.parent import Parent
from paretune.errors import ParetuneError
from paretune.methods import get_method
from paretune.methods.base import MethodContext
from paretune.run_folder import TASK_FILE
from paretune.stored.base import StoredForm
from paretune.stored.trained import save_trained_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ["this film was really good", "a dull and boring plot", "the music is lovely", "that ending was horrible"]
# Options a compression method needs beyond its defaults (torchscript: the fast ONNX exporter).
COMPRESS_OPTIONS = {"prune-magnitude": {"sparsity": 0.5}, "prune-heads": {"heads": 1},
                    "drop-layers": {"keep_layers": "first:1"}, "onnx": {"exporter": "torchscript"},
                    "onnx-int8": {"exporter": "torchscript"},
                    "onnx-int8-static": {"exporter": "torchscript", "calibration_rows": 16}}
# Fine-tuning methods saved as training saves them, and the form each must end up in.
TRAINED_FORMS = {"full": "pytorch", "lora": "pytorch", "prompt": "peft-adapter", "adapter": "bottleneck-adapter"}
# Largest |logit| change from in memory to reloaded. Saving is lossless for every form (int8 keeps
# its integers and scales, 16-bit its 16-bit weights, ONNX its graph); LoRA is compared unmerged
# in memory against merged on disk, which moves float sums in the last bits.
TOLERANCE = {"lora": 1e-4}
CASES = [f"compress:{name}" for name in COMPRESSION_METHODS] + [f"train:{name}" for name in TRAINED_FORMS]


@pytest.fixture(scope="module")
def parent(tmp_path_factory, tiny_model_dir) -> Path:
    folder = tmp_path_factory.mktemp("stored")
    run = paretune.finetune({
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"train": str(write_csv(folder / "train.csv", sentiment_rows(160, seed=1))),
                 "validation": str(write_csv(folder / "validation.csv", sentiment_rows(40, seed=2))),
                 "max_length": 32, "cache_dir": str(folder / "cache")},
        "training": {"epochs": 6, "batch_size": 16, "lr": 1e-3, "seed": 7, "warmup_ratio": 0.0,
                     "load_best": False, "save_every": 10_000},
        "output": {"dir": str(folder / "parent")},
    })
    return run.path


def batch(tokenizer) -> dict[str, torch.Tensor]:
    return dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))


@torch.no_grad()
def logits_of(predictor: Predictor) -> torch.Tensor:
    encoded = {k: v for k, v in batch(predictor.tokenizer).items() if k in ("input_ids", "attention_mask")}
    return predictor.model(**encoded).logits.float()


def labels_of(predictor: Predictor) -> list[str]:
    return [p["label"] for p in predictor.predict(TEXTS)]


def copy_without_model(run_dir: Path, target: Path) -> Path:
    shutil.copytree(run_dir, target)
    shutil.rmtree(target / "model")
    return target


def in_memory(model: torch.nn.Module, like: Predictor) -> Predictor:
    """A Predictor over a model that was never saved (the parent's task, tokenizer and settings)."""
    return Predictor(model.eval(), like.tokenizer, like.task, like.max_length, torch.device("cpu"), like.run_dir)


def compressed(parent_run: Path, name: str, workdir: Path):
    """(model in memory, form name, form settings) for one compression method, without saving."""
    source = Parent.open(parent_run)
    data = source.data
    workdir.mkdir()
    context = CompressContext(task=data.task, tokenizer=source.tokenizer, pad_id=source.pad_id,
                              max_length=source.info["max_length"], train=data.train,
                              validation=data.validation, workdir=workdir)
    method = COMPRESSION_METHODS[name]
    result = method.apply(source.load_model(), method.options(**COMPRESS_OPTIONS.get(name, {})), context)
    return result.model, result.form, result.form_settings


def trained(parent_run: Path, name: str):
    """The parent's model under fine-tuning method `name`, its new weights moved off their start."""
    source = Parent.open(parent_run)
    method = get_method(name)
    model = method.apply(source.load_model(), method.options(), MethodContext("classification", 10, 32))
    torch.manual_seed(0)
    with torch.no_grad():  # as if trained: adapters start as the identity, prompts at random
        for param_name, param in model.named_parameters():
            if any(key in param_name for key in ("lora_B", "bottleneck.up")):
                param.normal_(0, 0.2)
    return model.eval()


@pytest.mark.parametrize("case", CASES)
def test_every_form_reloads_to_what_it_was_in_memory(case, parent, tmp_path):
    kind, name = case.split(":")
    reference = Predictor.load(parent, device="cpu")
    run = copy_without_model(parent, tmp_path / "run")
    info = json.loads((parent / "model" / TASK_FILE).read_text())
    if kind == "compress":
        model, form, settings = compressed(parent, name, tmp_path / "work")
        before = in_memory(model, reference)
        expected_logits, expected_labels = logits_of(before), labels_of(before)
        stored.save_model(model, reference.tokenizer, run / "model", info, form, settings)
    else:
        model, form = trained(parent, name), TRAINED_FORMS[name]
        before = in_memory(model, reference)
        expected_logits, expected_labels = logits_of(before), labels_of(before)
        save_trained_model(model, reference.tokenizer, run / "model", run / "adapter", info)  # as training does

    recorded = json.loads((run / "model" / TASK_FILE).read_text())["form"]
    assert recorded["name"] == form and stored.form_of(run / "model").name == form
    assert form in stored.FORMS
    reloaded = Predictor.load(run, device="cpu")
    assert labels_of(reloaded) == expected_labels
    difference = (logits_of(reloaded) - expected_logits).abs().max().item()
    assert difference <= TOLERANCE.get(name, 1e-5), f"{case}: logits moved by {difference:.2e}"


def test_the_cases_cover_every_registered_form():
    reached = {TRAINED_FORMS[n] for n in TRAINED_FORMS}
    reached |= {"pytorch", "pruned-heads", "fp16", "bf16", "int8-dynamic", "onnx", "onnx-int8"}
    reached |= {"ensemble", "embedding-head"}  # made and reloaded through the Predictor in test_combining.py
    assert set(stored.FORMS) == reached, "a new stored form needs a case in this module"
    methods = {name for name in COMPRESSION_METHODS}
    assert methods == {c.split(":")[1] for c in CASES if c.startswith("compress:")}


def test_folders_written_before_forms_were_recorded_still_load(parent, tmp_path):
    """Trained runs recorded no form; prune-heads recorded "pytorch". Their files tell."""
    run = copy_without_model(parent, tmp_path / "pruned")
    model, form, settings = compressed(parent, "prune-heads", tmp_path / "work")
    reference = Predictor.load(parent, device="cpu")
    info = json.loads((parent / "model" / TASK_FILE).read_text())
    stored.save_model(model, reference.tokenizer, run / "model", info, form, settings)
    expected = logits_of(Predictor.load(run, device="cpu"))
    (run / "model" / TASK_FILE).write_text(json.dumps({**info, "form": {"name": "pytorch"}}))
    assert stored.form_of(run / "model").name == "pruned-heads"
    assert torch.allclose(logits_of(Predictor.load(run, device="cpu")), expected, atol=1e-6)

    legacy = copy_without_model(parent, tmp_path / "legacy-prompt")
    save_trained_model(trained(parent, "prompt"), reference.tokenizer, legacy / "model", legacy / "adapter", info)
    expected = logits_of(Predictor.load(legacy, device="cpu"))
    unrecorded = {k: v for k, v in json.loads((legacy / "model" / TASK_FILE).read_text()).items() if k != "form"}
    (legacy / "model" / TASK_FILE).write_text(json.dumps(unrecorded))
    assert stored.form_of(legacy / "model").name == "peft-adapter"
    assert torch.allclose(logits_of(Predictor.load(legacy, device="cpu")), expected, atol=1e-6)

    (legacy / "model" / TASK_FILE).write_text(json.dumps({**info, "form": {"name": "zip-9"}}))
    with pytest.raises(ParetuneError, match="unknown stored model form 'zip-9'.*newer paretune"):
        Predictor.load(legacy, device="cpu")


# --- a new form is one module and one registry line ---------------------------------------------
# What a new module under src/paretune/stored/ would hold: weights under another file name.
TOY_FILE = "toy_weights.safetensors"


def toy_save(model: torch.nn.Module, model_dir: Path, settings: dict) -> None:
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(model_dir / TOY_FILE))
    model.config.save_pretrained(model_dir)


def toy_load(model_dir: Path, auto_class, device=None, recorded=None, **kwargs) -> torch.nn.Module:
    config = transformers.AutoConfig.from_pretrained(model_dir, **kwargs)
    model = auto_class.from_config(config)
    model.load_state_dict(load_file(str(model_dir / TOY_FILE)))
    return model


TOY = StoredForm(name="toy-renamed", save=toy_save, load=toy_load, devices=lambda: ("cpu",),
                 description="transformers weights under another file name", use="a test form")


def test_a_new_form_needs_only_a_module_and_a_registry_line(parent, tmp_path, monkeypatch):
    monkeypatch.setitem(stored.FORMS, TOY.name, TOY)  # the registry line
    reference = Predictor.load(parent, device="cpu")
    run = copy_without_model(parent, tmp_path / "toy")
    info = json.loads((parent / "model" / TASK_FILE).read_text())
    stored.save_model(Parent.open(parent).load_model(), reference.tokenizer, run / "model", info, TOY.name)

    assert (run / "model" / TOY_FILE).is_file() and not (run / "model" / "model.safetensors").exists()
    assert stored.form_of(run / "model") is TOY
    reloaded = Predictor.load(run)  # no device asked: the form's own devices decide
    assert reloaded.device.type == "cpu"
    assert labels_of(reloaded) == labels_of(reference)
    assert torch.allclose(logits_of(reloaded), logits_of(reference), atol=1e-6)
    with pytest.raises(ParetuneError, match="toy-renamed model runs on cpu only"):
        stored.serving_device(TOY, "cuda")


def test_stored_imports_nothing_from_the_layers_above_it():
    above = ("paretune.compression", "paretune.export", "paretune.predictor", "paretune.cli", "paretune.serving")
    folder = Path(stored.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad = [n for n in names if n.startswith(above)]
            assert not bad, f"{path.name} imports {bad} from a layer above paretune.stored"


def test_a_pickled_adapter_is_refused_and_never_unpickled(parent, tmp_path, monkeypatch):
    """peft would fall back to adapter_model.bin (a pickle) when the safetensors file is missing."""
    reference = Predictor.load(parent, device="cpu")
    info = json.loads((parent / "model" / TASK_FILE).read_text())
    run = copy_without_model(parent, tmp_path / "pickled")
    save_trained_model(trained(parent, "prompt"), reference.tokenizer, run / "model", run / "adapter", info)
    weights = run / "model" / "adapter_model.safetensors"
    torch.save(load_file(str(weights)), run / "model" / "adapter_model.bin")
    weights.unlink()
    unpickled = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: unpickled.append(a) or {})
    with pytest.raises(ParetuneError, match="only from safetensors"):
        Predictor.load(run, device="cpu")
    assert not unpickled
