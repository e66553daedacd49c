"""Model families: the chat format each base LLM was trained with, as an explicit table.

A family is chosen by name in the recipe (`model.llm.family`), never guessed from a path.
Each template renders message content given as a plain string or as OpenAI-style parts
(`{"type": "image"}`, `{"type": "text", "text": ...}`), so the same Jinja string serves
training (LLaVA JSON converted to parts), `processor.apply_chat_template` in plain transformers,
and the OpenAI-compatible server. Assistant content sits inside `{% generation %}` markers:
the training labels are read from those spans of the real tokenization.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_TOKEN = "<image>"

# Renders one message's content: parts joined by newlines, an image part as "<image>", so
# [image, text] is LLaVA's "<image>\nquestion" and [text, image] its "question\n<image>".
_CONTENT = (
    "{% macro render_content(content) %}"
    "{% if content is string %}{{ content }}"
    "{% else %}{% for part in content %}{% if not loop.first %}{{ '\\n' }}{% endif %}"
    "{% if part['type'] == 'image' or part['type'] == 'image_url' %}" + IMAGE_TOKEN + ""
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{% endmacro %}"
)

CHATML_TEMPLATE = _CONTENT + (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|im_start|>assistant\n{% generation %}{{ render_content(message['content']) }}<|im_end|>{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "<|im_start|>{{ message['role'] }}\n{{ render_content(message['content']) }}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Llama-2 chat: "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s>" per exchange.
LLAMA2_TEMPLATE = _CONTENT + (
    "{% set ns = namespace(system='') %}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set ns.system = '<<SYS>>\n' + render_content(messages[0]['content']) + '\n<</SYS>>\n\n' %}"
    "{% set messages = messages[1:] %}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ bos_token }}[INST] {% if loop.first %}{{ ns.system }}{% endif %}"
    "{{ render_content(message['content']) }} [/INST]"
    "{% elif message['role'] == 'assistant' %}"
    " {% generation %}{{ render_content(message['content']) }} {{ eos_token }}{% endgeneration %}"
    "{% endif %}"
    "{% endfor %}"
)


@dataclass(frozen=True)
class Family:
    name: str
    chat_template: str
    # tokens that end an assistant turn; generation stops at any of them
    stop_tokens: tuple[str, ...]
    # special tokens the family's tokenizer must have (added to a from-scratch tokenizer)
    special_tokens: tuple[str, ...]
    bos_token: str | None
    eos_token: str
    pad_token: str
    # the plain text the template writes around messages (role names, markers). A from-scratch
    # tokenizer learns it as if it were language: unseen, "assistant" costs 9 byte tokens per turn
    frame_text: str = ""


FAMILIES: dict[str, Family] = {
    # SmolLM2, Qwen2/2.5, and our from-scratch tiny LM
    "chatml": Family(
        name="chatml",
        chat_template=CHATML_TEMPLATE,
        stop_tokens=("<|im_end|>",),
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        frame_text="system\nuser\nassistant\n",
    ),
    # Llama-2 and the X-LLaVA paper's base (Llama-2-13B with an expanded vocabulary)
    "llama2": Family(
        name="llama2",
        chat_template=LLAMA2_TEMPLATE,
        stop_tokens=("</s>",),
        special_tokens=("<unk>", "<s>", "</s>"),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<unk>",
        frame_text="[INST] <<SYS>>\n\n<</SYS>>\n\n [/INST] ",
    ),
}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}") from None
