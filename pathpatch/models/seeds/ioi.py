"""IOI, indirect object identification (Wang et al. 2022), for any model with a tokenizer.

"When Mary and John went to the store, John gave a drink to" -> " Mary". Two names are introduced, one of
them (the subject, S) is mentioned again, and the sentence ends where the other one (the indirect object,
IO) is expected. GPT-2 small solves it with a circuit the paper traces: duplicate-token and induction heads
at S2 notice that S is repeated, S-inhibition heads carry that to the end, and name mover heads at END
copy the name that was not repeated. The metric is the logit difference IO minus S, read at the last token.

Prompts fill templates of the paper's style in both name orders: ABBA ("When Mary and John ..., John
...": IO first) and BABA ("When John and Mary ..., John ...": S first). Names come from the paper's list of
common first names, kept where the name with a leading space is one token in this tokenizer; places and
objects likewise. Corruptions (the corrupt prompt keeps the template, place and object):

* ``abc`` (default, the paper's): the three name slots hold three other names, all different ("When
  Alice and Bob went to the store, Carol gave a drink to"), so neither IO nor S is supported.
* ``swap``: the second mention is the IO instead of S ("When Mary and John went to the store, Mary gave a
  drink to"), so the corrupt prompt's answer is the clean S: the logit difference flips sign.

Positions are labelled ``BOS``, ``IO``, ``S1``, ``S1_next`` (the token after S1, which induction heads at S2
attend to), ``S2`` and ``END``; the rest are ``other``. Templates differ in length, so the task comes as
``TaskGroups`` of same-length prompts, and the labels name each role in every group.
"""

import torch

from pathpatch.errors import InputError
from pathpatch.task.groups import AnyTask, Prompt, from_prompts
from pathpatch.task.lm_tasks import encode, fill, position_labels, require_tokenizer, single_token, single_tokens, word_positions

NAME = "ioi"
CORRUPTIONS = ("abc", "swap")
MIN_NAMES = 5  # IO, S and three other names for an 'abc' corrupt prompt
NAMES = (
    "Aaron", "Adam", "Alan", "Alex", "Alice", "Amy", "Anderson", "Andre", "Andrew", "Andy", "Anna", "Anthony", "Arthur",
    "Austin", "Blake", "Brandon", "Brian", "Carter", "Charles", "Charlie", "Christian", "Christopher", "Clark", "Cole",
    "Collins", "Connor", "Crew", "Crystal", "Daniel", "David", "Dean", "Edward", "Elizabeth", "Emily", "Eric", "Eva",
    "Ford", "Frank", "George", "Georgia", "Graham", "Grant", "Henry", "Ian", "Jack", "Jacob", "Jake", "James", "Jamie",
    "Jane", "Jason", "Jay", "Jennifer", "Jeremy", "Jessica", "John", "Jonathan", "Jordan", "Joseph", "Joshua", "Justin",
    "Kate", "Kelly", "Kevin", "Kyle", "Laura", "Leon", "Lewis", "Lisa", "Louis", "Luke", "Madison", "Marco", "Marcus",
    "Maria", "Mark", "Martin", "Mary", "Matthew", "Max", "Michael", "Michelle", "Morgan", "Patrick", "Paul", "Peter",
    "Prince", "Rachel", "Richard", "River", "Robert", "Roman", "Rose", "Ruby", "Russell", "Ryan", "Sarah", "Scott",
    "Sean", "Simon", "Stephen", "Steven", "Sullivan", "Taylor", "Theresa", "Thomas", "Tyler", "Victoria", "Warren",
    "William",
)
PLACES = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station")
OBJECTS = ("ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack")
# {A} and {B} are the first two names (ABBA: A is IO; BABA: A is S), {S} the second mention of S.
TEMPLATES = (
    "When {A} and {B} went to the {place}, {S} gave a {object} to",
    "Then, {A} and {B} went to the {place}. {S} gave a {object} to",
    "Then, {A} and {B} were working at the {place}. {S} decided to give a {object} to",
    "After {A} and {B} went to the {place}, {S} gave a {object} to",
    "While {A} and {B} were working at the {place}, {S} gave a {object} to",
    "While {A} and {B} were commuting to the {place}, {S} gave a {object} to",
    "Afterwards, {A} and {B} went to the {place}. {S} gave a {object} to",
    "Friends {A} and {B} found a {object} at the {place}. {S} gave it to",
)
ORDERS = ("ABBA", "BABA")


def make_task(
    n: int, seed: int, corruption: str | None = None, model: torch.nn.Module | None = None, *, names: "list[str] | None" = None
) -> AnyTask:
    """Return ``n`` IOI prompt pairs, spread evenly over templates and name orders, drawn from ``seed``.

    Args:
        n: Number of prompt pairs.
        seed: Seed of the draws of layouts, names, places and objects.
        corruption: ``abc`` (default) or ``swap``.
        model: A model with a tokenizer; prompts start with its tokenizer's BOS token.
        names: Names to draw from instead of the paper's list; each must be a single token with a leading space.

    Returns:
        ``TaskGroups`` of same-length prompts (a ``Task`` when all share one layout), metric ``logit_diff``.

    Raises:
        ValueError: No tokenizer, unknown corruption, a given name that is several tokens (named with its
            pieces), fewer than five single-token names, or a template the tokenizer merges across a name.
    """
    require_tokenizer(model, NAME)
    corruption = corruption or CORRUPTIONS[0]
    if corruption not in CORRUPTIONS:
        raise InputError(f"Task '{NAME}': unknown corruption {corruption!r}; choose one of {', '.join(CORRUPTIONS)}.")
    if names is None:
        pool = single_tokens(model, NAMES, NAME, "name", MIN_NAMES)
    else:
        pool = {name: single_token(model, " " + name, NAME, "name") for name in dict.fromkeys(names)}
        if len(pool) < MIN_NAMES:
            raise InputError(f"Task '{NAME}': {len(pool)} distinct names given ({', '.join(pool)}); give at least {MIN_NAMES} "
                             "(IO, S and three others for the 'abc' corruption).")
    places = single_tokens(model, PLACES, NAME, "place", 1)
    objects = single_tokens(model, OBJECTS, NAME, "object", 1)
    generator = torch.Generator().manual_seed(seed)
    layouts = [(template, order) for template in TEMPLATES for order in ORDERS]
    spread = torch.randperm(len(layouts), generator=generator).tolist()
    words, place_words, object_words = list(pool), list(places), list(objects)
    prompts = []
    for i in range(n):
        template, order = layouts[spread[i % len(layouts)]]
        chosen = [words[j] for j in torch.randperm(len(words), generator=generator)[:MIN_NAMES].tolist()]
        place = place_words[int(torch.randint(len(place_words), (), generator=generator))]
        thing = object_words[int(torch.randint(len(object_words), (), generator=generator))]
        prompts.append(_prompt(model, template, order, chosen, {"place": place, "object": thing}, corruption, pool))
    return from_prompts(NAME, prompts, "logit_diff", corruption)


def _prompt(
    model: torch.nn.Module, template: str, order: str, chosen: list[str], scene: dict[str, str], corruption: str, ids: dict[str, int]
) -> Prompt:
    """Return one prompt pair: IO and S are ``chosen[0]`` and ``chosen[1]``; ``chosen[2:]`` fill an 'abc' corrupt prompt."""
    io, s = chosen[:2]
    io_slot, s_slot = ("A", "B") if order == "ABBA" else ("B", "A")
    clean_names = {io_slot: io, s_slot: s, "S": s}
    corrupt_names = dict(zip("ABS", chosen[2:])) if corruption == "abc" else {**clean_names, "S": io}
    text, ends = fill(template, {**scene, **clean_names})
    clean = encode(model, text)
    where = word_positions(model, NAME, text, clean, ends, {slot: ids[name] for slot, name in clean_names.items()})
    corrupt_text, corrupt_ends = fill(template, {**scene, **corrupt_names})
    corrupt = encode(model, corrupt_text)
    if len(corrupt) != len(clean):
        raise InputError(f"Task '{NAME}': {text!r} is {len(clean)} tokens but its corrupt prompt {corrupt_text!r} is {len(corrupt)}; "
                         "a pair must have the same length. This tokenizer merges a name with the text next to it; use another model.")
    word_positions(model, NAME, corrupt_text, corrupt, corrupt_ends, {slot: ids[name] for slot, name in corrupt_names.items()})
    labels = position_labels(len(clean), {"IO": where[io_slot], "S1": where[s_slot], "S1_next": where[s_slot] + 1, "S2": where["S"]})
    return Prompt(clean, corrupt, torch.tensor([ids[io]]), torch.tensor([ids[s]]), torch.tensor([len(clean) - 1]), labels=labels)
