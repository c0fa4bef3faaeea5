"""A training script written for Weights & Biases, logging into Recipe by changing one import.

    RECIPE_HOME=~/recipe python examples/wandb_style.py [--epochs 5]

Everything it logs goes through `wandb` below: the config, the training loss at each batch (W&B's own step),
the validation metrics per epoch against the epoch (define_metric), the gradient and weight histograms (watch),
the best accuracy (summary), an alert when the loss is not going down. Prints the run's id.
"""
import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from recipe_core.compat import wandb  # was: import wandb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--fail", action="store_true", help="raise in the middle of training (a crash)")
    args = parser.parse_args()

    run = wandb.init(project="digits", name="mlp-digits", config=args, tags=["example"], group="mlp",
                     notes="a 1-hidden-layer MLP reaches > 90% on the 8x8 digits in a few epochs")
    wandb.config.update({"optimizer": "sgd"})
    wandb.define_metric("epoch")
    wandb.define_metric("val/*", step_metric="epoch")

    digits = load_digits()
    x_train, x_val, y_train, y_val = train_test_split(digits.data / 16.0, digits.target, test_size=0.25,
                                                      random_state=0)
    x_train, x_val = torch.tensor(x_train, dtype=torch.float32), torch.tensor(x_val, dtype=torch.float32)
    y_train, y_val = torch.tensor(y_train), torch.tensor(y_val)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, wandb.config.hidden), torch.nn.ReLU(),
                                torch.nn.Linear(wandb.config.hidden, 10))
    opt = torch.optim.SGD(model.parameters(), lr=wandb.config["lr"], momentum=0.9)
    wandb.watch(model, log="all", log_freq=10)

    best, first_loss = 0.0, None
    for epoch in range(wandb.config.epochs):
        model.train()
        order = torch.randperm(len(x_train))
        for start in range(0, len(order), wandb.config.batch_size):
            batch = order[start:start + wandb.config.batch_size]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            loss.backward()
            opt.step()
            wandb.log({"train": {"loss": loss.item()}})  # nested: logged as train/loss
            first_loss = loss.item() if first_loss is None else first_loss
        if args.fail and epoch == 1:
            raise RuntimeError("deliberate crash")
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            val_loss = torch.nn.functional.cross_entropy(logits, y_val).item()
            accuracy = (logits.argmax(1) == y_val).float().mean().item()
        best = max(best, accuracy)
        wandb.log({"val/loss": val_loss, "val/accuracy": accuracy, "epoch": epoch})
        if epoch == 0 and val_loss > first_loss:
            wandb.alert(title="not learning", text=f"val loss {val_loss:.3f} above the first batch's",
                        level=wandb.AlertLevel.WARN)
    wandb.summary["best_accuracy"] = best
    wandb.alert(title="done", text=f"best validation accuracy {best:.3f}")
    print(run.id, flush=True)
    wandb.finish()


if __name__ == "__main__":
    main()
