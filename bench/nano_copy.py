"""How well gpt-oss-nano copies out of its prompt: teacher-forced accuracy on the tokens a turn copies from far back.

Tool choice and grounded answers both end in a copy from the prompt, hundreds of tokens back: the declared
name that follows the right description, the value in the right passage. This feeds the generator's own
conversations (evaluation seed, seen and held-out declarations alternating) through each model once and
reports, per kind of copied span, how often the model's top token is the reference token, the reference
prefix given (so a later token is scored even when an earlier one would have gone wrong):

- tool name, first token: the choice among the declared tools, in the analysis ("type NAME" since generator v13,
  "It is NAME" before: a model trained on the older form is scored on the newer one here)
- tool name, later tokens: the copy proper, once the name has started
- tool listing: the names and descriptions of a "which tools do you have?" answer (generator v12's `tool_list`)
- grounded value: the passage's value in the final answer

    python bench/nano_copy.py --model A --model B --n 150      # prints a Markdown table, a column a model

Without --model it scores the shipped model.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import torch

from ossgate.harmony import text_tokens
from ossgate.model.checkpoint import load_model
from ossgate.model.transformer import Transformer
from ossgate.nano import data, evaluate, model_path

ROWS = ["tool name, first token", "tool name, later tokens", "tool listing", "grounded value"]


def find(seq: list[int], sub: list[int], start: int) -> int:
    for i in range(start, len(seq) - len(sub) + 1):
        if seq[i : i + len(sub)] == sub:
            return i
    return -1


def spans(s: data.Sample) -> Iterator[tuple[str, str]]:
    """(row, text) for each copied span of the sample's first assistant turn; text as it follows a space."""
    if s.kind == "tool" and s.meta.get("tool"):
        yield "tool name", s.meta["tool"]
    elif s.kind == "tool_list":
        for t in s.tools:
            yield "tool listing", t.name
            yield "tool listing", t.description
    elif s.kind == "grounded" and s.meta["answerable"]:
        yield "grounded value", s.meta["value"]


def samples(n: int) -> list[data.Sample]:
    rng = random.Random(evaluate.EVAL_SEED)
    out: list[data.Sample] = []
    for kind, want in (("tool", n), ("tool_list", n // 2), ("grounded", n // 2)):
        got = 0
        while got < want:
            s = data.sample(rng, kind, **({"held_out": got % 2 == 1} if kind != "grounded" else {}))
            if next(spans(s), None):
                out.append(s)
                got += 1
    return out


@torch.no_grad()
def score(model: Transformer, cases: list[data.Sample]) -> dict[str, tuple[int, int]]:
    hits: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for s in cases:
        tokens, _ = data.encode(s)
        start = len(data.prompt_tokens(s))
        top = model.logits(model(torch.tensor(tokens), torch.arange(len(tokens)))).argmax(-1).tolist()
        for row, text in spans(s):
            sub = text_tokens(" " + text)
            i = find(tokens, sub, start)
            if i < 0:
                continue
            start = i + len(sub)  # a listing's spans come in order
            for j, t in enumerate(sub):
                name = f"{row}, {'first token' if j == 0 else 'later tokens'}" if row == "tool name" else row
                total[name] += 1
                hits[name] += top[i + j - 1] == t
    return {r: (hits[r], total[r]) for r in ROWS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", action="append", help="checkpoint or --ship directory (repeat to compare); default shipped"
    )
    ap.add_argument("--n", type=int, default=150, help="tool conversations (half as many listings, grounded)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    paths = args.model or [str(model_path())]
    cases = samples(args.n)
    results = [
        score(load_model(model_path(Path(p)), dtype=torch.float32, show_progress=False).eval(), cases) for p in paths
    ]
    print("| copied span (teacher-forced top-1) | " + " | ".join(paths) + " |")
    print("|---|" + "---|" * len(paths))
    for r in ROWS:
        cells = [f"{h / t:.1%} ({t})" if t else "–" for h, t in (res[r] for res in results)]
        print(f"| {r} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
