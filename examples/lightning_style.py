"""A Lightning training script with the recipe's checks at the start of fit and its metrics in Recipe:

    RECIPE_HOME=~/recipe python examples/lightning_style.py [--epochs 3]

The only Recipe line is the callback. It checks the LightningModule on the first training batch (loss at init,
gradients, batch independence, overfit one batch, ...), then logs what the module logs with self.log, and keeps
gradient and weight histograms every 10 steps. Prints the run's id and the checks.
"""
import argparse

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from recipe_core.compat.lightning import RecipeCallback


class DigitsMLP(pl.LightningModule):
    def __init__(self, hidden: int = 32, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _index):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _index):
        x, y = batch
        logits = self(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


def loaders(batch_size: int = 64):
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, val = order[:1400], order[1400:]
    return (DataLoader(TensorDataset(x[train], y[train]), batch_size=batch_size, shuffle=True),
            DataLoader(TensorDataset(x[val], y[val]), batch_size=512))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    callback = RecipeCallback(name="digits-mlp-lightning", loss="cross_entropy", watch=10, tags=["example"])
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    train, val = loaders()
    trainer.fit(DigitsMLP(), train, val)
    print(callback.run.run_id, flush=True)
    print(callback.report, flush=True)


if __name__ == "__main__":
    main()
