"""A tiny Llama-architecture model built locally, for the demo and the tests (no model hub is reachable).

Its weights are random, so its outputs are nonsense, but it runs through the same vLLM and transformers
code paths as a real model: a byte-level BPE tokenizer with BOS/EOS and a chat template, float32 weights,
and a head size the CPU attention backend accepts. Built twice, it is byte-identical.
"""
from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}(no thinking)\n{% endif %}{% endif %}"
)

_CORPUS = [
    "Question: What is 2 + 2? Answer: 4",
    "Question: What is the capital of France? Answer: Paris",
    "The quick brown fox jumps over the lazy dog.",
    "A tiny model for tests: it knows nothing, but it runs like a real one.",
    "user assistant system Answer the question. Think step by step.",
    "0123456789 + - * / = ( ) . , ; : ! ? ' \" \n",
] * 20


def build_tiny_model(folder: str | Path, *, seed: int = 0) -> Path:
    """Write the tokenizer and a random LlamaForCausalLM to `folder` (skipped when already there)."""
    folder = Path(folder)
    if (folder / "config.json").exists() and (folder / "tokenizer.json").exists():
        return folder
    import torch  # deferred: torch and transformers take seconds to import
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_CORPUS, trainers.BpeTrainer(
        vocab_size=600, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    # Like Llama's tokenizer: BOS is prepended when special tokens are asked for.
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>", chat_template=CHAT_TEMPLATE)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, head_dim=32,
                         max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=3,
                         tie_word_embeddings=False, torch_dtype="float32")
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder
