"""An Ollama Modelfile for an exported GGUF: FROM the file, TEMPLATE in Ollama's Go template
language, and a stop PARAMETER for each end-of-turn token.

A Jinja chat template cannot be translated in general, but the templates decoders use wrap each
message in a fixed prefix and suffix per role. Those are read off the template itself: it is
rendered with marker contents, the text around each marker is the role's wrapping, and the result
is checked by rendering a longer conversation both ways. A template that does not fit that shape
(one that merges the system prompt into the first user turn, say) gets no TEMPLATE line: Ollama
then uses the template stored in the GGUF file, and the Modelfile says so.
"""
from __future__ import annotations

from dataclasses import dataclass

from paretune.tasks.chat_format import end_of_turn_ids

MARK = "\x00{}\x00"  # message contents no template adds anything to


@dataclass(frozen=True)
class Wrapping:
    before_first: str  # what the template writes before a conversation that starts without a system turn
    prefix: dict[str, str]  # role -> text before its content
    suffix: dict[str, str]  # role -> text after its content
    generation_prompt: str  # what opens the assistant's answer

    def render(self, messages: list[dict]) -> str:
        """The conversation as the Go template below renders it (for the check against Jinja)."""
        text = self.before_first if messages[0]["role"] != "system" else ""
        for message in messages:
            role = message["role"]
            text += self.prefix[role] + message["content"] + self.suffix[role]
        return text + (self.generation_prompt if messages[-1]["role"] != "assistant" else "")


def _render(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _between(text: str, start: str | None, end: str | None) -> str:
    begin = text.index(start) + len(start) if start else 0
    return text[begin:text.index(end, begin)] if end else text[begin:]


def read_wrapping(tokenizer) -> Wrapping | None:
    """Each role's prefix and suffix, read from renders with marker contents; None if the template
    wraps messages in any other way."""
    system, user, answer, user2, answer2 = (MARK.format(n) for n in ("s", "u", "a", "v", "b"))
    talk = [{"role": "system", "content": system}, {"role": "user", "content": user},
            {"role": "assistant", "content": answer}, {"role": "user", "content": user2},
            {"role": "assistant", "content": answer2}]
    try:
        full = _render(tokenizer, talk, False)
        opening = _render(tokenizer, talk[1:2], True)
        plain = _render(tokenizer, talk[1:2], False)
    except Exception:  # a template that refuses these conversations (any jinja error)
        return None
    if not opening.startswith(plain):
        return None
    generation_prompt = opening[len(plain):]
    assistant_suffix = _between(full, answer2, None)
    user_and_assistant = _between(full, user, answer)  # user suffix + assistant prefix
    assistant_prefix = generation_prompt if user_and_assistant.endswith(generation_prompt) else None
    after_answer = _between(full, answer, user2)  # assistant suffix + user prefix
    if assistant_prefix is None or not after_answer.startswith(assistant_suffix):
        return None
    user_prefix = after_answer[len(assistant_suffix):]
    system_and_user = _between(full, system, user)
    if not system_and_user.endswith(user_prefix) or not plain.split(user)[0].endswith(user_prefix):
        return None
    wrapping = Wrapping(
        before_first=plain.split(user)[0][: -len(user_prefix) or None],
        prefix={"system": _between(full, None, system), "user": user_prefix, "assistant": assistant_prefix},
        suffix={"system": system_and_user[: -len(user_prefix) or None],
                "user": user_and_assistant[: -len(assistant_prefix) or None], "assistant": assistant_suffix},
        generation_prompt=generation_prompt,
    )
    return wrapping if _agrees(tokenizer, wrapping) else None


def _agrees(tokenizer, wrapping: Wrapping) -> bool:
    checks = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
               {"role": "user", "content": "and?"}],
              [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]]
    return all(wrapping.render(talk) == _render(tokenizer, talk, True) for talk in checks)


def _literal(text: str) -> str:
    """`text` as literal text of a Go template ("{{" would open an action)."""
    return text.replace("{{", '{{ "{{" }}')


def go_template(wrapping: Wrapping) -> str:
    """Ollama's TEMPLATE for the wrapping: one line of actions, no trim markers ({{- would eat the
    newlines the roles end with)."""
    parts = ["{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}"]
    if wrapping.before_first:
        parts.append(f'{{{{ if and (eq $i 0) (ne .Role "system") }}}}{_literal(wrapping.before_first)}{{{{ end }}}}')
    branches = []
    for index, role in enumerate(("system", "user", "assistant")):
        keyword = "if" if index == 0 else "else if"
        branches.append(f'{{{{ {keyword} eq .Role "{role}" }}}}{_literal(wrapping.prefix[role])}{{{{ .Content }}}}'
                        f"{_literal(wrapping.suffix[role])}")
    parts.append("".join(branches) + "{{ end }}")
    parts.append(f'{{{{ if and $last (ne .Role "assistant") }}}}{_literal(wrapping.generation_prompt)}{{{{ end }}}}')
    parts.append("{{ end }}")
    return "".join(parts)


def modelfile(tokenizer, gguf_name: str) -> str:
    """The Modelfile text for `gguf_name` beside it."""
    lines = [f"FROM ./{gguf_name}", ""]
    wrapping = read_wrapping(tokenizer) if getattr(tokenizer, "chat_template", None) else None
    template = go_template(wrapping) if wrapping else None
    if template and '"""' not in template:
        lines += [f'TEMPLATE """{template}"""', ""]
    else:
        lines += ["# The run's chat template could not be written as an Ollama template: Ollama uses the",
                  "# template stored in the GGUF file (tokenizer.chat_template) when it recognises it.", ""]
    vocab = {index: token for token, index in tokenizer.get_vocab().items()}
    for token_id in sorted(end_of_turn_ids(tokenizer)):
        if token_id in vocab:
            lines.append(f'PARAMETER stop "{vocab[token_id]}"')
    return "\n".join(lines) + "\n"
