#!/usr/bin/env python
"""Zaremba et al. (2014)'s PTB models in plain PyTorch: the speed reference for ptb_lm.py.

    python benchmarks/ptb_torch.py --data-dir PATH/TO/ptb --max-steps 300
    python benchmarks/ptb_torch.py --data-dir PATH/TO/ptb --max-steps 300 --out runs/ptb_torch.json
    python benchmarks/ptb_torch.py --preset medium --data-dir PATH/TO/ptb --max-steps 150

The same model and training as ``experiments/ptb_lm.py --preset small`` (or ``medium``), without
jaxrnn. small: embedding 10000 x 200 -> 2-layer nn.LSTM(200, 200) -> linear 200 -> 10000, every
parameter (biases included) uniform in +-0.1, no dropout; loss = batch-mean cross entropy summed
over the 20 unrolled steps; SGD lr 1.0 with gradient clipping at global norm 5, lr multiplied by
0.5 per epoch after the 4th; the training split cut into 20 contiguous streams, windows of 20
steps, each window's final state carried into the next (detached) and reset at each epoch.
medium: 650 units, dropout 0.5 on the embedding output, between the layers and before the
softmax, init +-0.05, 35 unrolled steps, lr divided by 1.2 per epoch after the 6th.

Reads ``ptb.train.txt`` from --data-dir (each line's words and one ``<eos>``). Trains for
--max-steps updates (default: the preset's 13 epochs) and reports training tokens/s over the
steps after the first --warmup-steps (those include oneDNN's primitive creation and page faults),
and the per-token training loss of the timed steps. Exit code 2 when the data is missing.
``--compute-dtype bfloat16`` runs the model under ``torch.autocast`` (bf16 matmuls and LSTM,
float32 parameters, loss and optimizer), the counterpart of ptb_lm.py's flag of that name.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import sys
import time
from pathlib import Path

PRESETS = {  # as experiments/ptb_lm.py's
    "small": dict(hidden_size=200, num_layers=2, dropout=0.0, init_scale=0.1, lr=1.0,
                  lr_decay=0.5, decay_after=4, epochs=13, batch_size=20, bptt=20,
                  clip_norm=5.0),
    "medium": dict(hidden_size=650, num_layers=2, dropout=0.5, init_scale=0.05, lr=1.0,
                   lr_decay=1 / 1.2, decay_after=6, epochs=39, batch_size=20, bptt=35,
                   clip_norm=5.0),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--data-dir", type=Path, default=None, help="folder holding ptb.train.txt")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many updates (default: 13 epochs)")
    p.add_argument("--warmup-steps", type=int, default=50, help="untimed first updates")
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads (default 0: the number of cores)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compute-dtype", choices=["float32", "bfloat16"], default="float32",
                   help="bfloat16: forward under torch.autocast (as ptb_lm.py --compute-dtype "
                   "bfloat16: low-precision matmuls, float32 parameters and loss)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.max_steps is not None and args.max_steps <= args.warmup_steps:
        p.error(f"--max-steps ({args.max_steps}) must exceed --warmup-steps "
                f"({args.warmup_steps}): nothing would be timed")
    return args


def read_tokens(path: Path) -> list[str]:
    words = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words += line.split() + ["<eos>"]
    return words


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.data_dir is None:
        print("error: --data-dir is required (a folder holding ptb.train.txt)", file=sys.stderr)
        return 2
    train_file = args.data_dir / "ptb.train.txt"
    if not train_file.is_file():
        print(f"error: {train_file} does not exist", file=sys.stderr)
        return 2

    import torch
    from torch import nn

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    torch.set_num_threads(args.threads or cores)
    torch.manual_seed(args.seed)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    cfg = PRESETS[args.preset]

    words = read_tokens(train_file)
    counts = collections.Counter(words)
    vocab = {w: i for i, (w, _) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1],
                                                                                    kv[0])))}
    ids = torch.tensor([vocab[w] for w in words], dtype=torch.long)
    batch, bptt, hidden, v = cfg["batch_size"], cfg["bptt"], cfg["hidden_size"], len(vocab)
    batch_len = ids.numel() // batch
    stream = ids[: batch * batch_len].view(batch, batch_len).to(device)
    steps_per_epoch = (batch_len - 1) // bptt
    total = args.max_steps or cfg["epochs"] * steps_per_epoch

    class ZarembaLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(v, hidden)
            self.drop = nn.Dropout(cfg["dropout"])
            self.lstm = nn.LSTM(hidden, hidden, num_layers=cfg["num_layers"], batch_first=True,
                                dropout=cfg["dropout"])
            self.softmax = nn.Linear(hidden, v)
            for param in self.parameters():
                nn.init.uniform_(param, -cfg["init_scale"], cfg["init_scale"])

        def forward(self, tokens, state):
            out, state = self.lstm(self.drop(self.embedding(tokens)), state)
            return self.softmax(self.drop(out)), state

    model = ZarembaLM().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"])

    def zero_state():
        shape = (cfg["num_layers"], batch, hidden)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def precision():
        if args.compute_dtype == "bfloat16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    print(f"{args.preset} preset in torch {torch.__version__} on {device} "
          f"({torch.get_num_threads()} threads): vocab {v}, {ids.numel():,} training tokens, "
          f"{steps_per_epoch} steps/epoch, {total} steps", flush=True)
    state = zero_state()
    loss_sum = torch.zeros((), device=device)
    start = None
    for step in range(total):
        epoch, index = divmod(step, steps_per_epoch)
        if index == 0:
            state = zero_state()
            lr = cfg["lr"] * cfg["lr_decay"] ** max(epoch + 1 - cfg["decay_after"], 0)
            for group in optimizer.param_groups:
                group["lr"] = lr
        if step == args.warmup_steps:
            sync()
            start = time.perf_counter()
        x = stream[:, index * bptt:(index + 1) * bptt]
        y = stream[:, index * bptt + 1:(index + 1) * bptt + 1]
        state = tuple(s.detach().float() for s in state)
        with precision():
            logits, state = model(x, state)
        # batch-mean cross entropy summed over the unrolled steps = token sum / batch
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, v), y.reshape(-1),
                                           reduction="sum") / batch
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_norm"])
        optimizer.step()
        if start is not None:
            loss_sum += loss.detach()
    sync()
    seconds = time.perf_counter() - start
    timed = total - args.warmup_steps
    token_loss = float(loss_sum) / (timed * bptt)
    from jaxrnn.train.metrics import perplexity  # after the timed steps: JAX stays unloaded

    results = {"tokens_per_sec": timed * batch * bptt / seconds, "timed_steps": timed,
               "timed_s": seconds, "steps": total, "train_loss": token_loss,
               "train_ppl": perplexity(token_loss), "device": str(device),
               "threads": torch.get_num_threads(), "torch_version": torch.__version__,
               "compute_dtype": args.compute_dtype}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{results['tokens_per_sec']:,.0f} tokens/s over steps {args.warmup_steps + 1}.."
          f"{total} ({seconds:.1f} s); training ppl of those steps {results['train_ppl']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
