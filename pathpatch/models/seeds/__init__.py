"""The five seed tasks of the project's source documents, one module each.

Each module defines the task's exact token format, a seeded data sampler used for training and
evaluation, and ``make_task`` building clean/corrupt pairs whose corruption exposes the circuit the
document describes. ``pathpatch.models.zoo`` collects them into ``SeedSpec`` records.
"""

# The trainable seed models, in the order ``pathpatch.models.zoo.SEEDS`` lists them; kept here, free
# of heavy imports, for the command line's choices.
SEED_NAMES = ("permute", "sorted-list", "trigrams", "recurrence")
