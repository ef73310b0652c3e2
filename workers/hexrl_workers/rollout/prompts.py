"""A prompt's token ids: the user message from spec.prompt.template, wrapped by the tokenizer's chat template.

`chatTemplate: auto` uses `chatTemplateOverride`, else the tokenizer's own template when it has one, through
`tokenizer.apply_chat_template(messages, add_generation_prompt=True)`: the model sees exactly what it saw
in instruction tuning. A tokenizer without a template (the built-in `CharTokenizer`, a base model) and
`chatTemplate: none` get the plain text: the system prompt, a blank line, the user message.
"""

from __future__ import annotations

from typing import Any

from hexrl.api.dataspec import ChatTemplateUse, PromptSpec
from hexrl_workers.protocol import Prompt
from hexrl_workers.tasks import Tokenizer


class PromptError(ValueError):
    """The prompt cannot be built from this record (a template field it lacks, a chat template that fails)."""


class PromptEncoder:
    """Record → token ids for one job (spec.prompt) and tokenizer."""

    def __init__(self, spec: PromptSpec, tokenizer: Tokenizer) -> None:
        self.spec = spec
        self.tok = tokenizer
        self._hf: Any = getattr(tokenizer, "hf", None)
        """The `transformers` tokenizer behind `tokenizer` (None: the built-in one, which has no chat template)."""
        self.chat_template = self._template_in_use()
        """The Jinja chat template applied (None: plain text)."""

    def _template_in_use(self) -> str | None:
        if self.spec.chat_template == ChatTemplateUse.none:
            return None
        if self._hf is None:
            return None
        return self.spec.chat_template_override or getattr(self._hf, "chat_template", None) or None

    def user_message(self, prompt: Prompt) -> str:
        """spec.prompt.template filled from the record: {prompt} and its metadata columns."""
        fields = {**(prompt.metadata or {}), "prompt": prompt.text}
        try:
            return self.spec.template.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise PromptError(f"prompt.template needs {exc}, which the record does not have; its fields are "
                              f"{sorted(fields)} (add the column to dataset.columns.metadata)") from exc

    def messages(self, prompt: Prompt) -> list[dict[str, str]]:
        """The chat: the system prompt (if any) and the user message."""
        system = [{"role": "system", "content": self.spec.system_prompt}] if self.spec.system_prompt else []
        return [*system, {"role": "user", "content": self.user_message(prompt)}]

    def encode(self, prompt: Prompt) -> list[int]:
        """The token ids the engine generates from (PromptError when the record cannot make a prompt)."""
        if self.chat_template is None:
            text = self.user_message(prompt)
            if self.spec.system_prompt:
                text = f"{self.spec.system_prompt}\n\n{text}"
            return self.tok.encode(text)
        try:
            ids = self._hf.apply_chat_template(self.messages(prompt), chat_template=self.chat_template,
                                         add_generation_prompt=True, tokenize=True, return_dict=False)
        except PromptError:
            raise
        except Exception as exc:  # jinja raises its own error types from a user's template
            raise PromptError(f"the chat template failed on this prompt ({type(exc).__name__}: {exc}); check "
                              "prompt.chatTemplateOverride or set prompt.chatTemplate to none") from exc
        return [int(t) for t in ids]
