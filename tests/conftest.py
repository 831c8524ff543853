"""Shared fixtures: tiny random models and tokenizers built on the fly (nothing is downloaded)."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (pyproject's addopts) each worker gets one torch thread, so two workers share
# two cores without oversubscribing them; idle OpenMP threads sleep rather than spin. Both are
# read when torch loads, which is after this file.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

POSITIVE = ["good", "great", "excellent", "lovely", "wonderful", "fine", "superb", "happy"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "boring", "sad", "dull", "horrible"]
NOUNS = ["movie", "film", "story", "plot", "cast", "music", "ending", "script"]
FILLER = ["the", "a", "this", "that", "was", "is", "really", "very", "quite", "and", "so"]
NAMES = ["john", "mary", "paris", "london", "google", "acme", "berlin", "alice"]


def sentiment_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """A learnable toy sentiment set: the label is carried by one polar word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        word = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        words = [rng.choice(FILLER), rng.choice(NOUNS), rng.choice(FILLER), word]
        words += [rng.choice(FILLER) for _ in range(rng.randint(0, 6))]
        rows.append((" ".join(words), label))
    return rows


def ner_sentences(n: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    types = {"john": "PER", "mary": "PER", "alice": "PER", "paris": "LOC", "london": "LOC",
             "berlin": "LOC", "google": "ORG", "acme": "ORG"}
    out = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.randint(3, 9)):
            if rng.random() < 0.3:
                name = rng.choice(NAMES)
                words.append(name)
                tags.append("B-" + types[name])
                if rng.random() < 0.3:
                    words.append(rng.choice(NAMES))
                    tags.append("I-" + types[name])
            else:
                words.append(rng.choice(FILLER + NOUNS))
                tags.append("O")
        out.append((words, tags))
    return out


def write_csv(path: Path, rows, header=("text", "label")) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_conll(path: Path, sentences) -> Path:
    lines = []
    for words, tags in sentences:
        lines += [f"{w} {t}" for w, t in zip(words, tags)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session", autouse=True)
def temporary_paretune_cache(tmp_path_factory):
    """Tests never write the user's ~/.cache/paretune (converted GGUF models of hundreds of MB,
    tokenization caches): the session gets its own PARETUNE_CACHE, removed with pytest's tmp files.
    PARETUNE_TEST_CACHE names a folder to keep between sessions instead (quality runs: SmolLM2 is
    converted once, not every session)."""
    previous = os.environ.get("PARETUNE_CACHE")
    kept = os.environ.get("PARETUNE_TEST_CACHE")
    os.environ["PARETUNE_CACHE"] = kept or str(tmp_path_factory.mktemp("paretune-cache"))
    yield Path(os.environ["PARETUNE_CACHE"])
    if previous is None:
        os.environ.pop("PARETUNE_CACHE", None)
    else:
        os.environ["PARETUNE_CACHE"] = previous


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tiny models on one thread: they gain nothing from more, and when other
    jobs share the CPU, two spinning OpenMP threads make each step several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer BERT (hidden 32) with a WordPiece tokenizer trained on the toy vocabulary."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    # The vocabulary is written out, not trained: WordPieceTrainer breaks ties by hash order, which
    # changes from process to process, so every test run got a different tiny model and tests near
    # their margins passed or failed by chance (issue 13). Whole words of the toy corpus, then
    # single characters and their "##" continuations for anything else.
    corpus = [t for t, _ in sentiment_rows(400)] + [" ".join(w) for w, _ in ner_sentences(200)]
    words = sorted({word for text in corpus for word in text.lower().split()})
    letters = sorted({ch for word in words for ch in word} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = specials + words + [c for c in letters if c not in words] + ["##" + c for c in letters]
    tokens += [f"[unused{i}]" for i in range(200 - len(tokens))]  # 200 ids, as tests' random batches assume
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=64,
    )
    fast.save_pretrained(folder)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, pad_token_id=0,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture()
def sentiment_files(tmp_path) -> dict[str, Path]:
    return {
        "train": write_csv(tmp_path / "train.csv", sentiment_rows(160, seed=1)),
        "validation": write_csv(tmp_path / "validation.csv", sentiment_rows(40, seed=2)),
    }


@pytest.fixture()
def tiny_config(tiny_model_dir, sentiment_files, tmp_path):
    """Sections for a fast classification run on the tiny model (a dict, ready for overrides)."""
    return {
        "model": {"name_or_path": str(tiny_model_dir)},
        "task": {"type": "classification"},
        "data": {
            "train": str(sentiment_files["train"]),
            "validation": str(sentiment_files["validation"]),
            "max_length": 32,
            "cache_dir": str(tmp_path / "cache"),
        },
        # ~100 steps: what the random tiny model needs to learn the toy task.
        "training": {"epochs": 10, "batch_size": 16, "lr": 1e-3, "seed": 7, "warmup_ratio": 0.0},
        "output": {"dir": str(tmp_path / "run")},
    }


@pytest.fixture()
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA} (quality tests need ../shared/data)")
    return SHARED_DATA


def write_images(root: Path, per_class: int, seed: int = 0, size: int = 16) -> Path:
    """A learnable toy image set, a folder per class: dark or light squares on mid-grey noise."""
    from PIL import Image

    rng = random.Random(seed)
    for label, base in (("dark", 40), ("light", 215)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = Image.new("RGB", (size, size), tuple(rng.randrange(100, 156) for _ in range(3)))
            corner = rng.randrange(0, size // 2)
            image.paste(tuple(base + rng.randrange(-20, 20) for _ in range(3)),
                        (corner, corner, corner + size // 2, corner + size // 2))
            image.save(root / label / f"{label}-{i:03d}.png")
    return root


def write_multilabel_images(folder: Path, rows: int, seed: int = 0, size: int = 16) -> Path:
    """labels.csv (image, label) over mid-grey noise holding a dark square (top left), a light one
    (bottom right) or both: labels "dark", "light" or "dark,light"."""
    import csv

    from PIL import Image

    rng = random.Random(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    half = size // 2
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["image", "label"])
        for i in range(rows):
            labels = ("dark", "light", "dark,light")[i % 3]
            image = Image.new("RGB", (size, size), tuple(rng.randrange(100, 156) for _ in range(3)))
            if "dark" in labels:
                image.paste((30 + rng.randrange(20),) * 3, (0, 0, half, half))
            if "light" in labels:
                image.paste((205 + rng.randrange(20),) * 3, (half, half, size, size))
            image.save(folder / "images" / f"{i:03d}.png")
            writer.writerow([f"images/{i:03d}.png", labels])
    return folder / "labels.csv"


def tiny_vit(folder: Path, image_size: int = 16) -> Path:
    """A 2-layer ViT (hidden 32, patches of 8 px) built from a config: no preprocessor file."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, num_labels=2)
    ViTForImageClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory) -> Path:
    return tiny_vit(tmp_path_factory.mktemp("tiny-vit"))
