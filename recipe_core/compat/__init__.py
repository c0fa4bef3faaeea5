"""Entry points for scripts written for other tools, logging into Recipe: `from recipe_core.compat import wandb`
(the W&B calls a training script makes) and `recipe_core.compat.lightning.RecipeCallback` (a Lightning Trainer's
run, with the recipe's checks at the start of fit). Each is imported only by the script that asks for it."""
