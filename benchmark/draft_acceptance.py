"""Draft acceptance offline: our suffix drafter's settings against SGLang's NGRAM drafter.

Replays recorded greedy output streams (the file ``golden_replay record`` writes)
as a speculative decoder with a perfect verifier would drive each drafter: at
every step draft after the context, accept the deepest draft node whose path
equals the next output tokens, emit those plus the bonus token, and update the
drafter with them. Streams run in order through one drafter, so what earlier
responses taught it carries over, as in a server.

Drafters:

* ``ours``: ``sglang_arctic.spec.suffix_tree.SuffixCache`` (per-request tree over
  prompt and output, global tree over finished responses), one row per
  ``--settings`` entry;
* ``ngram``: SGLang's own ``NgramCorpus`` with its server defaults (trie depth
  18, BFS breadth 1..10, 12-token drafts) fed as SGLang's NGRAM worker feeds it:
  the last 18 tokens of prompt and output after every step.

Reported per drafter: tokens emitted per step, draft tokens verified per step,
and tokens per second under a linear step-cost model ``--step-ms`` +
``--token-ms`` per verified position (the figures the server logs in its
``ARCTIC_SUFFIX:`` line). No adaptive width here: every draft token is verified,
so the rate is a guide for choosing settings, and the end-to-end benchmark
(``side_by_side``) is the measurement::

    .venv/bin/python -m benchmark.golden_replay record --workloads sharegpt \\
        --num-prompts 48 --concurrency 8 --output /tmp/chat_streams.jsonl
    .venv/bin/python -m benchmark.draft_acceptance --streams /tmp/chat_streams.jsonl
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

if __package__ in (None, ""):
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

from benchmark.golden_replay import (  # noqa: E402
    Params, Stream, accepted_tree, load_streams, ours_drafter, replay)

NGRAM_TRIE_DEPTH = 18  # SGLang's server defaults for --speculative-algorithm NGRAM
NGRAM_DRAFT_TOKENS = 12
NGRAM_BFS_BREADTH = (1, 10)

DEFAULT_SETTINGS = (
    "factor=1,offset=0,min_prob=0.1,tree=0",  # the reference's defaults
    "factor=2,offset=0,min_prob=0.05,tree=0",
    "factor=2,offset=0,min_prob=0.05,tree=1",
    "factor=2,offset=4,min_prob=0.05,tree=0",
    "factor=2,offset=4,min_prob=0.05,tree=1",  # the shipped defaults
    "factor=2,offset=8,min_prob=0.05,tree=1",
)


@dataclass(frozen=True)
class SuffixSettings:
    factor: float
    offset: float
    min_prob: float
    tree: bool

    @classmethod
    def parse(cls, text: str) -> "SuffixSettings":
        """``factor=F,offset=O,min_prob=P,tree=0|1`` (every key required)."""
        try:
            kv = dict(part.split("=", 1) for part in text.split(","))
            return cls(float(kv.pop("factor")), float(kv.pop("offset")),
                       float(kv.pop("min_prob")), kv.pop("tree") not in ("0", "false"))
        except (KeyError, ValueError) as exc:
            raise argparse.ArgumentTypeError(
                f"settings {text!r}: expected factor=F,offset=O,min_prob=P,tree=0|1 ({exc})") from None


@dataclass(frozen=True)
class Acceptance:
    name: str
    steps: int
    tokens: int
    drafted: int

    def rate(self, step_ms: float, token_ms: float) -> float:
        """Tokens per second if each step costs step_ms plus token_ms per verified position."""
        seconds = (self.steps * step_ms + (self.drafted + self.steps) * token_ms) / 1e3
        return self.tokens / seconds


def replay_ours(streams: Sequence[Stream], s: SuffixSettings, max_spec_tokens: int,
                max_depth: int = 64) -> Acceptance:
    """golden_replay's loop on our tree (its timing is not used here)."""
    params = Params(max_depth=max_depth, max_spec_tokens=max_spec_tokens, factor=s.factor,
                    offset=s.offset, min_token_prob=s.min_prob, use_tree=s.tree)
    stats = replay(streams, ours_drafter(), params)
    name = (f"ours factor {s.factor:g} offset {s.offset:g} min prob {s.min_prob:g} "
            f"{'tree' if s.tree else 'path'}")
    return Acceptance(name, sum(x.steps for x in stats), sum(x.emitted for x in stats),
                      sum(x.drafted for x in stats))


def _parents_from_mask(mask: np.ndarray) -> list[int]:
    """Draft-token parents (-1: the root) from NGRAM's ancestor-or-self mask,
    whose slot 0 is the root: a node's parent is its nearest ancestor."""
    parents = []
    for i in range(1, mask.shape[0]):
        ancestors = np.flatnonzero(mask[i, :i])
        parents.append(int(ancestors[-1]) - 1 if ancestors.size else -1)
    return parents


def replay_ngram(streams: Sequence[Stream]) -> Acceptance:
    from sglang.srt.speculative.cpp_ngram.ngram_corpus import NgramCorpus

    n, depth = NGRAM_DRAFT_TOKENS, NGRAM_TRIE_DEPTH
    corpus = NgramCorpus(max_trie_depth=depth, min_bfs_breadth=NGRAM_BFS_BREADTH[0],
                         max_bfs_breadth=NGRAM_BFS_BREADTH[1], draft_token_num=n,
                         match_type="BFS", capacity=10_000_000)
    steps = tokens = 0
    for stream in streams:
        rid, prompt, pos = stream.id, stream.prompt_ids, 0
        while pos < len(stream.output_ids):
            tail = (prompt + stream.output_ids[:pos])[-depth:]
            corpus.synchronize()
            drafts, mask = corpus.batch_get([rid], [tail], [len(prompt) + pos])
            drafts = np.asarray(drafts).reshape(-1)[:n]
            parents = _parents_from_mask(np.asarray(mask).reshape(n, n).astype(bool))
            # a perfect verifier commits the accepted tokens plus the bonus token
            accepted = accepted_tree([int(t) for t in drafts[1:]], parents, stream.output_ids, pos)
            pos += len(stream.output_ids[pos:pos + accepted + 1])
            steps += 1
            corpus.batch_put([(prompt + stream.output_ids[:pos])[-depth:]])
        tokens += pos
        corpus.erase_match_state([rid])
    return Acceptance(f"SGLang NGRAM (server defaults, {n}-token drafts)", steps, tokens, steps * (n - 1))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", required=True, help="a stream file from `golden_replay record`")
    p.add_argument("--workloads", default=None, help="comma-separated (default: all in the file)")
    p.add_argument("--settings", type=SuffixSettings.parse, action="append",
                   help="our drafter's settings, repeatable (default: the reference's, the "
                   "shipped ones and a few between)")
    p.add_argument("--max-spec-tokens", type=int, default=16)
    p.add_argument("--step-ms", type=float, default=54.0, help="cost model: ms per verify step")
    p.add_argument("--token-ms", type=float, default=0.7, help="cost model: ms per verified position")
    args = p.parse_args(argv)
    streams = load_streams(Path(args.streams), args.workloads.split(",") if args.workloads else None)
    if not streams:
        p.error(f"no streams in {args.streams}")
    settings = args.settings or [SuffixSettings.parse(s) for s in DEFAULT_SETTINGS]
    print(f"{len(streams)} streams, {sum(len(s.output_ids) for s in streams)} output tokens; "
          f"cost model {args.step_ms:g} ms per step + {args.token_ms:g} ms per verified position\n")
    print("| drafter | tokens/step | verified positions/step | tok/s (cost model) |")
    print("|---|---:|---:|---:|")
    runs = [replay_ngram] + [lambda st, s=s: replay_ours(st, s, args.max_spec_tokens) for s in settings]
    for run in runs:
        r = run(streams)
        print(f"| {r.name} | {r.tokens / r.steps:.3f} | {(r.drafted + r.steps) / r.steps:.1f} | "
              f"{r.rate(args.step_ms, args.token_ms):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
