#!/usr/bin/env python3
"""FedAvg written with PyTorch and mpi4py: the peer that fedkd-sim's round time
is compared with (bench/README.md, "Engine speed").

    mpirun --oversubscribe -np 16 /usr/bin/python3 bench/fedavg_peer.py --model cnn --rounds 5

The same work as `fedkd-sim --set mode=federated --set algorithm=fedavg`
with 15 clients all selected, IID, one local epoch, batch 64, SGD with
momentum 0.9: rank 0 is the server, ranks 1 .. P-1 the clients, one torch
thread per rank. Each round the server broadcasts the model, evaluates the
previous round's model on the 10000 test images while the clients train
(fedkd-sim overlaps its evaluation the same way), gathers the clients'
models and averages them weighted by sample counts. The models are the
`mlp` (784-200-200-10) and `cnn` (LeNet-5 style) presets of
src/nn/model.c, layer for layer.

Prints one line per round on rank 0: `round R seconds S accuracy A` (A is
the accuracy of the previous round's model), then `mean_round_seconds M`
over the rounds after the first.
"""
import argparse
import gzip
import os
import struct
import sys
import time

import numpy as np
import torch
from mpi4py import MPI


def read_idx(path):
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(data_dir, prefix):
    images = read_idx(os.path.join(data_dir, prefix + "-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, prefix + "-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return x, torch.from_numpy(labels.astype(np.int64))


def build(name):
    nn = torch.nn
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 200),
                             nn.ReLU(), nn.Linear(200, 10))
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def flat(model):
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy().copy()


def load_flat(model, vector):
    torch.nn.utils.vector_to_parameters(torch.from_numpy(vector), model.parameters())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["mlp", "cnn"], default="cnn")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()

    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if size < 2:
        sys.exit("fedavg_peer.py: needs at least 2 ranks (a server and a client)")
    clients = size - 1
    torch.manual_seed(args.seed)
    model = build(args.model)
    loss_function = torch.nn.CrossEntropyLoss()

    if rank == 0:
        test_x, test_y = load(args.data, "t10k")
        weights = flat(model)
        previous = None
        times = []
        for round_index in range(1, args.rounds + 1):
            start = time.perf_counter()
            comm.Bcast(weights, root=0)
            accuracy = float("nan")
            if previous is not None:  # overlapped with the clients' training
                load_flat(model, previous)
                with torch.no_grad():
                    correct = 0
                    for i in range(0, len(test_y), 1000):
                        logits = model(test_x[i:i + 1000])
                        correct += int((logits.argmax(1) == test_y[i:i + 1000]).sum())
                accuracy = correct / len(test_y)
            counts = comm.gather(0, root=0)[1:]
            gathered = np.empty((size, weights.size), dtype=np.float32)
            comm.Gather(np.zeros_like(weights), gathered, root=0)
            total = float(sum(counts))
            weights = sum(gathered[c + 1] * (counts[c] / total) for c in range(clients))
            weights = weights.astype(np.float32)
            previous = weights
            seconds = time.perf_counter() - start
            times.append(seconds)
            print("round %d seconds %.3f accuracy %.4f" % (round_index, seconds, accuracy),
                  flush=True)
        later = times[1:] if len(times) > 1 else times
        print("mean_round_seconds %.3f" % (sum(later) / len(later)), flush=True)
    else:
        train_x, train_y = load(args.data, "train")
        # IID: a seeded permutation cut into `clients` equal parts.
        order = np.random.default_rng(args.seed).permutation(len(train_y))
        mine = torch.from_numpy(np.array_split(order, clients)[rank - 1])
        x, y = train_x[mine], train_y[mine]
        weights = np.empty_like(flat(model))
        generator = torch.Generator().manual_seed(args.seed * 1000 + rank)
        for round_index in range(1, args.rounds + 1):
            comm.Bcast(weights, root=0)
            load_flat(model, weights)
            optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
            shuffle = torch.randperm(len(y), generator=generator)
            for i in range(0, len(y), args.batch):
                batch = shuffle[i:i + args.batch]
                optimizer.zero_grad()
                loss = loss_function(model(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
            comm.gather(len(y), root=0)
            comm.Gather(flat(model), None, root=0)


if __name__ == "__main__":
    main()
