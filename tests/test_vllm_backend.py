"""The vllm backend on the real engine (CPU build) and the tiny model: token-for-token agreement with
transformers, lm-eval's loglikelihood split, stop strings, chat templates and seeds."""
import math

import pytest
import torch

from eval_pipeline.generation.backends import backend_for
from eval_pipeline.generation.requests import GenRequest, effective_params
from eval_pipeline.models.registry import Model, VllmOptions

PROMPTS = ["Question: What is 2 + 2? Answer:", "The quick brown fox", "A tiny model", "0123",
           "Question: What is the capital of France?", "user assistant", "lazy dog.", "Think step by step."]


@pytest.fixture(scope="module")
def engine(tiny_model):
    model = Model("tiny", "tiny", VllmOptions(path=str(tiny_model), dtype="float32", max_model_len=256))
    return backend_for(model).backend


@pytest.fixture(scope="module")
def chat_engine(tiny_model):
    model = Model("tiny-chat", "tiny-chat", VllmOptions(path=str(tiny_model), dtype="float32", max_model_len=256,
                                                        chat=True))
    return backend_for(model).backend


@pytest.fixture(scope="module")
def hf(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, torch_dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model)


def _gen(prompt, index=0, **run):
    return GenRequest(index, index, "generate_until", prompt, None, effective_params({"until": []}, run))


def test_greedy_token_ids_equal_transformers(engine, hf):
    model, tok = hf
    outs = engine.generate([_gen(p, i, max_output_tokens=12) for i, p in enumerate(PROMPTS)], {}, {})
    for prompt, out in zip(PROMPTS, outs):
        ids = tok(prompt, return_tensors="pt").input_ids  # the tokenizer adds its BOS, as lm-eval 0.4.13
        ref = model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)[0, ids.shape[1]:].tolist()
        assert out.error is None
        assert out.output_token_ids == ref, prompt
        assert out.input_tokens == ids.shape[1] and out.output_tokens == len(ref)


def _hf_loglikelihood(model, tok, context, continuation):
    """lm-eval's split, computed independently: context whitespace moves to the continuation; the
    continuation's tokens are what follows the context's own encoding in the whole encoding."""
    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    whole = tok(context + continuation).input_ids
    ctx = tok(context).input_ids
    cont = whole[len(ctx):]
    with torch.no_grad():
        logits = model(torch.tensor([ctx + cont])).logits[0].log_softmax(-1)
    total, greedy = 0.0, True
    for j, token in enumerate(cont):
        row = logits[len(ctx) + j - 1]
        total += row[token].item()
        greedy = greedy and int(row.argmax()) == token
    return total, greedy


def test_loglikelihood_matches_transformers_with_lm_eval_split(engine, hf):
    model, tok = hf
    pairs = [("Question: What is 2 + 2? Answer: ", "4"), ("The quick brown", " fox"), ("0123", "456"),
             ("Question: What is the capital of France? Answer:", " Paris")]
    outs = engine.generate([GenRequest(i, i, "loglikelihood", c, x, {}) for i, (c, x) in enumerate(pairs)], {}, {})
    for (context, continuation), out in zip(pairs, outs):
        ref, ref_greedy = _hf_loglikelihood(model, tok, context, continuation)
        assert out.logprob == pytest.approx(ref, abs=1e-4), (context, continuation)
        assert out.is_greedy == ref_greedy
        assert out.finish_reason == "logprobs" and math.isfinite(out.logprob)


def test_a_greedy_continuation_is_greedy(engine):
    first = engine.generate([_gen("The quick brown fox", max_output_tokens=3)], {}, {})[0]
    text = engine.tokenizer.decode(first.output_token_ids[:2])
    ll = engine.generate([GenRequest(0, 0, "loglikelihood", "The quick brown fox", text, {})], {}, {})[0]
    assert ll.is_greedy is True


def test_stop_strings_cut_the_output(engine):
    free = engine.generate([_gen("The quick brown fox", max_output_tokens=24)], {}, {})[0]
    assert len(free.output_text) > 4
    stop = free.output_text[2:4]
    cut = engine.generate([_gen("The quick brown fox", max_output_tokens=24, stop=[stop])], {}, {})[0]
    assert cut.output_text == free.output_text.split(stop)[0]
    assert cut.finish_reason == "stop"


def test_chat_template_instructions_and_kwargs(chat_engine, engine):
    run = {"instructions": "Answer briefly.", "chat_template_kwargs": {"enable_thinking": False}}
    rendered = chat_engine.render("What is 2 + 2?", run)
    assert rendered.startswith("<s>system\nAnswer briefly.</s>\n<s>user\nWhat is 2 + 2?</s>\n<s>assistant\n")
    assert rendered.endswith("(no thinking)\n")
    assert "(no thinking)" not in chat_engine.render("What is 2 + 2?", {})
    assert engine.render("What is 2 + 2?", run) == "What is 2 + 2?"  # a base model gets the raw prompt
    a = chat_engine.generate([_gen("What is 2 + 2?", max_output_tokens=6)], run, {})[0]
    b = chat_engine.generate([_gen("What is 2 + 2?", max_output_tokens=6)], {}, {})[0]
    assert a.input_tokens > b.input_tokens


def test_seeded_sampling_is_reproducible(engine):
    def sample(seed):
        return engine.generate([_gen("The quick brown fox", max_output_tokens=16, temperature=1.5, seed=seed)],
                               {}, {})[0].output_token_ids

    assert sample(7) == sample(7)
    assert any(sample(7) != sample(s) for s in (8, 9, 10))


def test_do_sample_false_is_greedy_whatever_the_temperature(engine):
    greedy = engine.generate([_gen("0123", max_output_tokens=10)], {}, {})[0]
    forced = engine.generate([_gen("0123", max_output_tokens=10, temperature=1.5, do_sample=False)], {}, {})[0]
    assert forced.output_token_ids == greedy.output_token_ids


def test_a_worker_keeps_its_engines_up_to_the_limit_and_releases_the_least_recently_used(tiny_model, monkeypatch):
    from eval_pipeline.errors import InvalidInput
    from eval_pipeline.generation import backends

    monkeypatch.setenv("EVAL_PIPELINE_MAX_ENGINES", "2")
    backends.release_all()
    a, b, c = (Model(f"t{n}", f"t{n}", VllmOptions(path=str(tiny_model), dtype="float32", max_model_len=n))
               for n in (128, 192, 160))
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
    try:
        assert backend_for(a).loaded_now and backend_for(b).loaded_now
        assert not backend_for(a).loaded_now  # kept, and now the most recently used
        assert backend_for(c).loaded_now  # a third: b, the least recently used, is released
        assert backends.loaded_engines() == [a.fingerprint, c.fingerprint]
        assert backend_for(b).loaded_now and backends.loaded_engines() == [c.fingerprint, b.fingerprint]
        monkeypatch.setenv("EVAL_PIPELINE_MAX_ENGINES", "0")
        with pytest.raises(InvalidInput) as err:
            backend_for(a)
        assert err.value.field == "EVAL_PIPELINE_MAX_ENGINES"
    finally:
        backends.release_all()
