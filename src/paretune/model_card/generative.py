"""What a generative run's card says: the chat template its prompts are rendered with, the commands
that answer (`generate`, `serve`), and a transformers `generate()` snippet that renders prompts the
way training did (tests/test_model_card.py runs it)."""
from __future__ import annotations

import json
from pathlib import Path

from paretune.config.schema import Config


def generates(config: Config) -> bool:
    from paretune.tasks import task_class

    return task_class(config.task.type).generates


def uses_chat_template(model_dir: Path, config: Config) -> bool:
    """Whether prompts go through a chat template: the one saved with the tokenizer, unless turned off."""
    if not generates(config) or config.task.chat is False:
        return False
    settings = model_dir / "tokenizer_config.json"
    saved = settings.is_file() and "chat_template" in json.loads(settings.read_text(encoding="utf-8"))
    return (model_dir / "chat_template.jinja").is_file() or saved


def prompt_line(model_dir: Path, config: Config) -> str:
    """The card's line in place of labels: the chat template, or raw-text prompts."""
    if not uses_chat_template(model_dir, config):
        return "- prompts: raw text (no chat template), the answer follows the prompt"
    system = f"; system prompt: \"{config.task.system_prompt}\"" if config.task.system_prompt else ""
    return f"- chat template: `model/chat_template.jinja` (saved with the tokenizer; `generate` uses it){system}"


def generate_lines(config: Config, chat: bool) -> list[str]:
    if chat:
        system = ([f'    {{"role": "system", "content": {json.dumps(config.task.system_prompt)}}},']
                  if config.task.system_prompt else [])
        prompt = ["messages = [", *system, '    {"role": "user", "content": "some text"},', "]",
                  "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, "
                  'return_tensors="pt")']
    else:
        prompt = ['inputs = tokenizer("some text", return_tensors="pt")']
    return [*prompt, f"output = model.generate(**inputs, max_new_tokens={config.task.max_new_tokens}, do_sample=False)",
            'answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)']


def commands(name: str, flag: str) -> list[str]:
    return [f'paretune generate {name} --prompt "some text"{flag}',
            f"paretune generate {name} --input prompts.jsonl --output answers.jsonl{flag}",
            f"paretune serve {name} --api-key-file keys.txt{flag}"]
