"""The gpt-oss-nano training run: data -> compact vocabulary -> Transformer -> Trainer, from one seed."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from rich.progress import Progress
from safetensors.torch import load_file
from torch.nn.utils import parametrize

from ossgate.errors import CheckpointError, InvalidRequest
from ossgate.model import mxfp4
from ossgate.model.config import ModelConfig
from ossgate.model.transformer import Transformer
from ossgate.nano import data
from ossgate.tune.batches import Example, batches
from ossgate.tune.trainer import TrainConfig, Trainer, init_weights
from ossgate.tune.vocab import CompactVocab

log = logging.getLogger(__name__)

FULL_VOCAB = 201088


def nano_config(vocab_size: int = FULL_VOCAB, heads: int = 4, kv_heads: int = 2) -> ModelConfig:
    """gpt-oss-nano's shape: gpt-oss in every respect but size.

    Hidden and intermediate sizes are multiples of 32, the MXFP4 block.
    """
    return ModelConfig(
        num_hidden_layers=4,
        num_local_experts=8,
        num_experts_per_tok=2,
        vocab_size=vocab_size,
        hidden_size=160,
        intermediate_size=256,
        head_dim=32,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        sliding_window=128,
        quantized=False,
    )


def number_digits(vocab: CompactVocab) -> tuple[list[int], torch.Tensor]:
    """The compact rows of o200k's 1-3 digit number tokens, and which code vectors each one sums.

    Columns: 4 for the length (0 never used), then 10 digits for each of ones, tens, hundreds.
    """
    from ossgate.harmony import encoding

    enc = encoding()
    rows: list[int] = []
    columns: list[list[int]] = []
    for compact, full in enumerate(vocab.ids):
        text = enc.decode([full])
        if text.isascii() and text.isdigit() and 1 <= len(text) <= 3:
            rows.append(compact)
            columns.append([len(text)] + [4 + 10 * i + int(ch) for i, ch in enumerate(reversed(text))])
    incidence = torch.zeros(len(rows), 34)
    for r, cols in enumerate(columns):
        incidence[r, cols] = 1.0
    return rows, incidence


def init_number_embeddings(
    model: Transformer, vocab: CompactVocab, seed: int, kept: Sequence[int] = (), std: float = 0.02
) -> list[int]:
    """Set every number token's embedding to the sum of its digits' place vectors; returns those rows.

    o200k writes numbers as 1-3 digit tokens while the nano model works digit by digit, so it has to
    read "the tens digit of token 347" out of an embedding. Random rows make that a 1000-entry lookup
    learnt from a few dozen occurrences each; rows built from (place, digit) vectors make it a linear
    read-out, the same for a number seen twice as for one seen a thousand times.

    `kept` are rows a starting model supplied (`init_from_shipped`): theirs is the code that model was
    trained to read, so they stay, and new numbers get rows in that code. Redrawn from this run's seed, the
    frozen code was a new one under a model trained on another: every `--init` run with a new seed did that.
    """
    rows, incidence = number_digits(vocab)
    weight = model.model.embed_tokens.weight
    old = _kept_numbers(rows, kept)
    if old:
        code = _fit_code(incidence[old], weight[[rows[i] for i in old]])
    else:
        gen = torch.Generator().manual_seed(seed + 1)
        D = model.config.hidden_size
        place = torch.randn(3, 10, D, generator=gen) * std  # place (ones, tens, hundreds) x digit
        length = torch.randn(4, D, generator=gen) * std
        code = torch.cat([length, place.reshape(30, D)])
    fitted = set(old)
    new = [i for i in range(len(rows)) if i not in fitted]
    with torch.no_grad():
        weight[[rows[i] for i in new]] = incidence[new] @ code
    return rows


def _kept_numbers(rows: list[int], kept: Sequence[int]) -> list[int]:
    """Positions in `rows` (the number tokens' rows) of those a starting model supplied."""
    known = set(kept)
    return [i for i, r in enumerate(rows) if r in known]


def _fit_code(incidence: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The (length, place-digit) code vectors whose sums come nearest to `rows`."""
    # gelsd: the incidence is rank-deficient (an unused length column; each place's digits sum to the
    # length columns), where the default driver returned zeros
    return torch.linalg.lstsq(incidence, rows.detach().float(), driver="gelsd").solution


class FactoredRows(torch.nn.Module):
    """A parametrisation of the unembedding: the number rows are sums of 34 trained (length, place-digit) vectors.

    Free output rows are learnt per token (v0.6's fit the place code with R² 0.20): every result token
    is its own class seen a few dozen times, and "42 + 2 = 46" was the commonest arithmetic error.
    Factored, the logit of 44 is the hidden state's score for "two digits" + "tens 4" + "ones 4", each
    learnt from every number that has it (session 12's run: arithmetic 91.2% -> 94.4%, bench/results/nano.md).
    """

    def __init__(self, rows: list[int], incidence: torch.Tensor, code: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("rows", torch.tensor(rows), persistent=False)
        self.register_buffer("incidence", incidence, persistent=False)
        self.code = torch.nn.Parameter(code)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.index_copy(0, self.rows, self.incidence @ self.code)


def factor_number_outputs(model: Transformer, vocab: CompactVocab, kept: Sequence[int] = ()) -> None:
    """Make the number rows of `model.lm_head` factored (`FactoredRows`), starting from the nearest such rows.

    With `kept` (rows a starting model supplied), the code is fitted to those rows alone: new numbers'
    random rows would only pull it off the one the model was trained with.
    """
    rows, incidence = number_digits(vocab)
    fit = _kept_numbers(rows, kept) or list(range(len(rows)))
    code = _fit_code(incidence[fit], model.lm_head.weight[[rows[i] for i in fit]])
    parametrize.register_parametrization(model.lm_head, "weight", FactoredRows(rows, incidence, code))


def fold(model: Transformer) -> Transformer:
    """The model with any factored unembedding written out as a plain tensor (the gpt-oss layout has no other)."""
    if parametrize.is_parametrized(model.lm_head, "weight"):
        parametrize.remove_parametrizations(model.lm_head, "weight", leave_parametrized=True)
    return model


def freeze_rows(weight: torch.nn.Parameter, rows: list[int]) -> None:
    """Keep `rows` of `weight` where they are: their gradient is zeroed, so AdamW never moves them.

    (Embeddings take no weight decay, and Adam's step is 0 for a gradient that was always 0.) Trained
    freely, the place code of the number rows drifted: a linear probe on v0.5's step-7000 embeddings read
    the hundreds / tens / ones digit of held-out number tokens right 89 / 95 / 84% of the time.
    """
    keep = torch.ones(weight.shape[0], 1)
    keep[rows] = 0.0
    weight.register_hook(lambda grad: grad * keep)


def init_from_shipped(model: Transformer, vocab: CompactVocab, source: Path) -> list[int]:
    """Start from the weights of a shipped (compact, MXFP4) gpt-oss-nano; returns the rows it had a value for.

    Embedding and unembedding rows are matched by o200k id, so data that uses new tokens keeps those rows
    as initialised; experts are dequantised. The network shapes must agree.
    """
    from ossgate.nano.artifact import COMPACT_FILE, ROWS

    stored = load_file(str(Path(source) / COMPACT_FILE))
    old = {int(full): i for i, full in enumerate(stored.pop("vocab_ids").tolist())}
    hits = torch.tensor([(i, old[full]) for i, full in enumerate(vocab.ids) if full in old])
    state = model.state_dict()
    with torch.no_grad():
        for name, t in state.items():
            if name in ROWS:  # (ids, D): the ids differ, the width must not
                value = stored[name][hits[:, 1]]
                if value.shape[1:] != t.shape[1:]:
                    raise CheckpointError(f"{source}: {name} rows are {value.shape[1]} wide, this run's {t.shape[1]}")
                t[hits[:, 0]] = value.to(t.dtype)
                continue
            if name + "_blocks" in stored:  # MXFP4 (E, out, in/32, 16) -> dense (E, in, out)
                value = mxfp4.dequantize(stored[name + "_blocks"], stored[name + "_scales"], torch.float32)
                value = value.transpose(1, 2)
            elif name in stored:
                value = stored[name]
            elif name.endswith("rotary.inv_freq"):  # computed from the config, never stored
                continue
            else:
                raise CheckpointError(f"{source}: no tensor {name}; not a gpt-oss-nano of this shape")
            if value.shape != t.shape:
                raise CheckpointError(f"{source}: {name} is {tuple(value.shape)}, this run's is {tuple(t.shape)}")
            t.copy_(value.to(t.dtype))
    return hits[:, 0].tolist()


def tie(model: Transformer) -> None:
    """Share one parameter between the embedding and the unembedding."""
    model.lm_head.weight = model.model.embed_tokens.weight


@dataclass
class RunConfig:
    """Everything that defines the run besides the code: reproduce it with the same values."""

    seed: int = 0
    # distinct conversations: v0.5 saw its 30 000 about six times each and its loss on fresh ones was
    # twice the training loss (nearly six times on grounded answers); 100 000 are seen about twice
    samples: int = 100000
    batch_tokens: int = 4096
    steps: int = 8000  # from scratch; ~105-160 min at 2 threads on a 2-vCPU EPYC (0.8-1.2 s a step)
    lr: float = 3e-3
    warmup: int = 60
    checkpoint_every: int = 100
    # a shipped gpt-oss-nano directory to start from instead of random weights: v0.6 is v0.5 trained on
    # for 5000 steps at lr 1e-3 (training.json has the command)
    init: str | None = None
    # Tie the unembedding to the embedding (exported as two equal tensors: gpt-oss unties them), so that
    # copying a token from the prompt needs a head that moves its embedding rather than an output row
    # learnt per id. Measured against the untied run (4000 steps, seed 0, held-out n=50, dense): arithmetic
    # 16.7% vs 7.4%, but right tool 42% vs 50%, grounded exact 20% vs 36% (bench/results/nano.md); the
    # shipped model is untied.
    tie_embeddings: bool = False
    attention_heads: int = 4  # query heads of 32 dims (the hidden size stays 160)
    kv_heads: int = 2
    factored_numbers: bool = False  # number tokens' output rows are `FactoredRows` (untied runs only)
    # loss weight of the tool name a call's analysis copies from its declaration (`data.encode`): v0.12
    # copied the right description and then a wrong name in 232 of its 265 wrong calls
    name_weight: float = 1.0
    # loss weight of the numbers a turn copies from the conversation: v0.16's wrong grounded answers
    # cited the right passage and miscopied its number (364 -> 64) in 13 of 14
    number_weight: float = 1.0


# RunConfig fields that shape the network: a resumed run takes them from its checkpoint
_ARCHITECTURE = ("tie_embeddings", "attention_heads", "kv_heads", "factored_numbers")


def architecture(run: dict) -> dict:
    """The network-shaping fields of a run's settings (a checkpoint written before a field existed: its default)."""
    return {name: run.get(name, getattr(RunConfig, name)) for name in _ARCHITECTURE}


def network(arch: dict, n_ids: int, seed: int | None = None) -> Transformer:
    """The nano Transformer for `architecture(...)` over n_ids compact ids; initialised from `seed` if given."""
    model = Transformer(nano_config(n_ids, arch["attention_heads"], arch["kv_heads"]))
    if seed is not None:
        init_weights(model, seed)  # before tying: the shared tensor keeps the embedding's initialisation
    if arch["tie_embeddings"]:
        tie(model)
    return model


def vocabulary_samples(seed: int) -> list[data.Sample]:
    """Conversations drawn only to list the ids the generator can produce (held-out tool names included)."""
    rng = random.Random(f"vocab-{seed}")
    return [data.tool_call(rng, rng.choice(["en", "es"]), "high", held_out=True) for _ in range(300)]


def build_examples(
    run: RunConfig, show_progress: bool = True, cache: Path | None = None, workers: int = 1
) -> tuple[list[Example], CompactVocab]:
    """Tokenised training conversations and the ids they use (cached in `cache`: tokenising takes minutes)."""
    key = {"seed": run.seed, "samples": run.samples, "generator": data.GENERATOR_VERSION}
    if run.name_weight != 1.0:  # caches written before the weight existed keep their key
        key["name_weight"] = run.name_weight
    if run.number_weight != 1.0:
        key["number_weight"] = run.number_weight
    if cache is not None and cache.exists():
        stored = torch.load(cache, weights_only=False)
        if stored["key"] == key:
            return [Example(t, m) for t, m in stored["examples"]], CompactVocab(stored["vocab"], FULL_VOCAB)
    examples, vocab = _tokenise(run, show_progress, workers)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save({"key": key, "examples": [(e.tokens, e.mask) for e in examples], "vocab": vocab.ids}, tmp)
        tmp.replace(cache)
    return examples, vocab


def _encode_all(
    samples: list[data.Sample], workers: int, name_weight: float = 1.0, number_weight: float = 1.0
) -> Iterator[tuple[list[int], list[float]]]:
    """`data.encode` of every sample, in order; rendering is pure Python (~9 ms each), so workers split it."""
    encode = partial(data.encode, name_weight=name_weight, number_weight=number_weight)
    if workers <= 1:
        yield from map(encode, samples)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(encode, samples, chunksize=256)


def _tokenise(run: RunConfig, show_progress: bool, workers: int = 1) -> tuple[list[Example], CompactVocab]:
    samples = data.dataset(run.seed, run.samples)
    examples: list[Example] = []
    with Progress(transient=True, disable=not show_progress) as bar:
        task = bar.add_task("tokenising", total=len(samples))
        for tokens, mask in _encode_all(samples, workers, run.name_weight, run.number_weight):
            examples.append(Example(tokens, mask))
            bar.advance(task)
    used = {t for ex in examples for t in ex.tokens}
    for s in vocabulary_samples(run.seed):
        used.update(data.encode(s)[0])
    return examples, CompactVocab(used, FULL_VOCAB)


def train(
    run: RunConfig, out_dir: Path, show_progress: bool = True, threads: int = 1
) -> tuple[Transformer, CompactVocab, list[dict]]:
    """Train (or resume) the nano model; returns the compact-vocabulary model, its vocabulary and the loss history."""
    torch.set_num_threads(threads)
    torch.manual_seed(run.seed)
    t0 = time.monotonic()
    examples, vocab = build_examples(run, show_progress, cache=out_dir / "examples.pt", workers=threads)
    log.info("%s examples, %s used token ids, built in %.0fs", len(examples), len(vocab), time.monotonic() - t0)
    compact_examples = [Example(vocab.compact(torch.tensor(ex.tokens)).tolist(), ex.mask) for ex in examples]
    previous = out_dir / "checkpoint.pt"
    if previous.exists():  # a resumed run keeps the shape and tying it started with
        for name, value in architecture(torch.load(previous, weights_only=False)["extra"]["run"]).items():
            setattr(run, name, value)
    if run.factored_numbers and run.tie_embeddings:  # tied, the factored rows would be the frozen embedding too
        raise InvalidRequest("--factored-numbers needs untied embeddings", param="factored_numbers")
    model = network(architecture(run.__dict__), len(vocab), run.seed)
    kept: list[int] = []
    if run.init and not previous.exists():
        kept = init_from_shipped(model, vocab, Path(run.init))
        log.info("started from %s (%s rows it did not have start fresh)", run.init, len(vocab) - len(kept))
    # frozen, the number rows must hold one place code: the starting model's, or a new one
    number_rows = init_number_embeddings(model, vocab, run.seed, kept)
    if not run.tie_embeddings:  # tied, the same rows are the output rows of the numbers: those must train
        freeze_rows(model.model.embed_tokens.weight, number_rows)
    if run.factored_numbers:
        factor_number_outputs(model, vocab, kept)
    config = TrainConfig(
        steps=run.steps, lr=run.lr, warmup=run.warmup, seed=run.seed, checkpoint_every=run.checkpoint_every
    )
    trainer = Trainer(
        model,
        config,
        n_unused=vocab.n_unused,
        out_dir=out_dir,
        extra_state={"vocab_ids": vocab.ids, "run": run.__dict__},
    )
    trainer.resume()
    stream = batches(compact_examples, run.batch_tokens, seed=run.seed)
    for _ in range(trainer.step):  # a resumed run sees the same batches as an uninterrupted one
        next(stream)
    history = trainer.fit(stream, progress=show_progress)
    return fold(model), vocab, history


def load_trained(out_dir: Path) -> tuple[Transformer, CompactVocab, list[dict]]:
    """The model saved by `train` in `out_dir` (its last checkpoint)."""
    state = torch.load(out_dir / "checkpoint.pt", weights_only=False)
    vocab = CompactVocab(state["extra"]["vocab_ids"], FULL_VOCAB)
    arch = architecture(state["extra"]["run"])
    model = network(arch, len(vocab))
    if arch["factored_numbers"]:
        factor_number_outputs(model, vocab)
    model.load_state_dict(state["model"])
    return fold(model).eval(), vocab, state["history"]
