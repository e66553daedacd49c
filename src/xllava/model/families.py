"""Model families: the chat format each base LLM was trained with, as an explicit table.

Each template reproduces the chat_template its authors ship for text conversations
(tests/test_families.py renders both through transformers and compares), with two additions:
image parts render as `<image>`, and assistant content sits inside `{% generation %}` markers.

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

# Llama-3, 3.1, 3.2, 3.3: a header per message, content trimmed, "<|eot_id|>" after each turn. The
# 3.1+ templates on the hub also put a "Cutting Knowledge Date" block into the system turn; the
# training template is Llama-3.0's, which has none (docs/models.md).
LLAMA3_TEMPLATE = _CONTENT + (
    "{% for message in messages %}"
    "{% if loop.first %}{{ bos_token }}{% endif %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ render_content(message['content']) | trim }}<|eot_id|>{% endgeneration %}"
    "{% else %}{{ render_content(message['content']) | trim }}<|eot_id|>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

# ChatML with Qwen2.5's default system message when the conversation has none.
QWEN2_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
QWEN2_TEMPLATE = _CONTENT + (
    "{% if not messages or messages[0]['role'] != 'system' %}"
    "<|im_start|>system\n" + QWEN2_DEFAULT_SYSTEM + "<|im_end|>\n"
    "{% endif %}"
) + CHATML_TEMPLATE[len(_CONTENT):]

# Qwen3: ChatML without a default system message; the assistant turn after the last user turn
# opens with an empty thinking block, and so does the generation prompt (Qwen3's template with
# enable_thinking=false): the model answers without thinking. The block is prompt, not label.
QWEN3_TEMPLATE = _CONTENT + (
    "{% set ns = namespace(last_user=messages | length - 1, found=false) %}"
    "{% for message in messages[::-1] %}"
    "{% if not ns.found and message['role'] == 'user' %}"
    "{% set ns.last_user = messages | length - 1 - loop.index0 %}{% set ns.found = true %}"
    "{% endif %}"
    "{% endfor %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|im_start|>assistant\n"
    "{% if loop.last and loop.index0 > ns.last_user %}<think>\n\n</think>\n\n{% endif %}"
    "{% generation %}{{ render_content(message['content']) }}<|im_end|>{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "<|im_start|>{{ message['role'] }}\n{{ render_content(message['content']) }}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n\n</think>\n\n{% endif %}"
)

# Gemma-3: no system role (its text opens the first user turn), "model" for the assistant,
# content trimmed.
GEMMA3_TEMPLATE = _CONTENT + (
    "{{ bos_token }}"
    "{% set ns = namespace(prefix='') %}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set ns.prefix = render_content(messages[0]['content']) + '\n\n' %}"
    "{% set messages = messages[1:] %}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<start_of_turn>model\n"
    "{% generation %}{{ render_content(message['content']) | trim }}<end_of_turn>{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "<start_of_turn>{{ message['role'] }}\n{% if loop.first %}{{ ns.prefix }}{% endif %}"
    "{{ render_content(message['content']) | trim }}<end_of_turn>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

# Mistral's v3 instruct format: "<s>[INST] user[/INST] answer</s>[INST] ...", the system text
# opening the last user turn (where it stands when the model is asked to answer).
MISTRAL_TEMPLATE = _CONTENT + (
    "{% set ns = namespace(system='', last_user=-1) %}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set ns.system = render_content(messages[0]['content']) + '\n\n' %}"
    "{% set messages = messages[1:] %}"
    "{% endif %}"
    "{% for message in messages %}{% if message['role'] == 'user' %}{% set ns.last_user = loop.index0 %}{% endif %}"
    "{% endfor %}"
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "[INST] {% if loop.index0 == ns.last_user %}{{ ns.system }}{% endif %}"
    "{{ render_content(message['content']) }}[/INST]"
    "{% elif message['role'] == 'assistant' %}"
    " {% generation %}{{ render_content(message['content']) | trim }}{{ eos_token }}{% endgeneration %}"
    "{% endif %}"
    "{% endfor %}"
)

# LLaVA-1.5's conversation format (Vicuna v1): "{system} USER: {q} ASSISTANT: {a}</s>USER: ...",
# with LLaVA's default system message when the conversation has none.
VICUNA_V1_DEFAULT_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                            "The assistant gives helpful, detailed, and polite answers to the human's questions.")
VICUNA_V1_TEMPLATE = _CONTENT + (
    "{% set ns = namespace(system='" + VICUNA_V1_DEFAULT_SYSTEM.replace("'", "\\'") + "') %}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set ns.system = render_content(messages[0]['content']) %}"
    "{% set messages = messages[1:] %}"
    "{% endif %}"
    "{{ bos_token }}{{ ns.system }} "
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {{ render_content(message['content']) }} "
    "{% elif message['role'] == 'assistant' %}"
    "ASSISTANT:{% generation %} {{ render_content(message['content']) }}{{ eos_token }}{% endgeneration %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
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
    # which chat format the template reproduces, and the real tokenizer whose chat_template the
    # tests compare it with (an xllava.vocab.npm_tokenizers key; None: no real template installs)
    template_source: str = ""
    tested_tokenizer: str | None = None


FAMILIES: dict[str, Family] = {
    # SmolLM2, and our from-scratch tiny LM
    "chatml": Family(
        name="chatml",
        chat_template=CHATML_TEMPLATE,
        stop_tokens=("<|im_end|>",),
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        frame_text="system\nuser\nassistant\n",
        template_source="ChatML, no default system message",
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
        template_source="Llama-2-chat [INST] <<SYS>> format",
    ),
    "llama3": Family(
        name="llama3",
        chat_template=LLAMA3_TEMPLATE,
        stop_tokens=("<|eot_id|>", "<|end_of_text|>"),
        special_tokens=("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                        "<|eot_id|>"),
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        # every 3.x tokenizer has it; 3.1's "<|finetune_right_pad_id|>" is a reserved token in 3.0
        pad_token="<|end_of_text|>",
        frame_text="system\n\nuser\n\nassistant\n\n",
        template_source="Llama-3 chat_template (header format of 3, 3.1, 3.2, 3.3)",
        tested_tokenizer="llama3",
    ),
    "qwen2": Family(
        name="qwen2",
        chat_template=QWEN2_TEMPLATE,
        stop_tokens=("<|im_end|>", "<|endoftext|>"),
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        frame_text="system\nuser\nassistant\n",
        template_source="Qwen2.5 ChatML with its default system message",
    ),
    "qwen3": Family(
        name="qwen3",
        chat_template=QWEN3_TEMPLATE,
        stop_tokens=("<|im_end|>", "<|endoftext|>"),
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        frame_text="system\nuser\nassistant\n",
        template_source="Qwen3 chat_template, enable_thinking=false",
        tested_tokenizer="qwen3",
    ),
    "gemma3": Family(
        name="gemma3",
        chat_template=GEMMA3_TEMPLATE,
        stop_tokens=("<end_of_turn>", "<eos>"),
        special_tokens=("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"),
        bos_token="<bos>",
        eos_token="<end_of_turn>",
        pad_token="<pad>",
        frame_text="user\nmodel\n",
        template_source="Gemma-3 chat_template (system text joins the first user turn)",
        tested_tokenizer="gemma3",
    ),
    "mistral": Family(
        name="mistral",
        chat_template=MISTRAL_TEMPLATE,
        stop_tokens=("</s>",),
        special_tokens=("<unk>", "<s>", "</s>"),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<unk>",
        frame_text="[INST] [/INST] ",
        template_source="Mistral v3 [INST] format (system text opens the last user turn)",
    ),
    "vicuna_v1": Family(
        name="vicuna_v1",
        chat_template=VICUNA_V1_TEMPLATE,
        stop_tokens=("</s>",),
        special_tokens=("<unk>", "<s>", "</s>"),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<unk>",
        frame_text=VICUNA_V1_DEFAULT_SYSTEM + " USER: ASSISTANT: ",
        template_source="LLaVA-1.5 conv_vicuna_v1 (USER: ... ASSISTANT:)",
    ),
}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}") from None


class FamilyMismatch(ValueError):
    """The tokenizer lacks special tokens its named family's chat format needs."""


def check_tokenizer(family: Family, vocab: dict[str, int], where: str) -> None:
    """Raise naming the family's special, stop and pad tokens that the tokenizer's vocabulary lacks."""
    needed = dict.fromkeys([*family.special_tokens, *family.stop_tokens, family.eos_token, family.pad_token,
                            *([family.bos_token] if family.bos_token else [])])
    missing = [t for t in needed if t not in vocab]
    if missing:
        raise FamilyMismatch(f"{where}: the tokenizer does not match model family {family.name!r}: missing special "
                             f"tokens {missing} (families: {sorted(FAMILIES)})")
