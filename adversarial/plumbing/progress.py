"""Progress on stderr for every run that takes more than a few seconds.

One tqdm bar, drawn only when stderr is a terminal: nothing in a pipe, a log file or a
test's captured output, and never anything on stdout, which holds the results.

    for photo in progress(photos, "photos", unit="photo"): ...
    for name, attack in each(attacks, "audit"):  # "audit: APGD-T (DLR)"
        note("target 3 of 9")  # what within it
"""

import sys


def progress(items=None, what=None, unit="it", total=None):
    """A tqdm bar over `items` (or of `total`, updated by hand), described by `what`;
    set_description() says what is being done now. It disappears when done."""
    from tqdm import tqdm  # here: only the long runs need it

    return tqdm(
        items,
        desc=what,
        total=total,
        unit=unit,
        file=sys.stderr,
        disable=None,  # None: drawn only on a terminal
        leave=False,
        dynamic_ncols=True,
    )


_current = []  # the bars of each() under way, innermost last


def each(named, what, unit="attack"):
    """Yield the (name, item) pairs of the dict `named`, the bar saying which is under way
    ("audit: APGD-T (DLR)")."""
    with progress(total=len(named), what=what, unit=unit) as bar:
        _current.append(bar)
        try:
            for name, item in named.items():
                bar.set_description(f"{what}: {name}", refresh=False)
                bar.set_postfix_str("")
                yield name, item
                bar.update()
        finally:
            _current.remove(bar)


def note(text):
    """Say more about the item under way on the innermost bar of each() (if any)."""
    if _current:
        _current[-1].set_postfix_str(text)


def runs_of(runs, what):
    """An on_step for an attack made of up to `runs` runs of steps (APGD-T: one per target
    class): each time the step count starts again, note which run is under way
    ("target 3 of 9")."""
    state = {"run": 0, "last": None}

    def on_step(step, loss, predicted):
        if state["last"] is None or step <= state["last"]:
            state["run"] += 1
            note(f"{what} {state['run']} of {runs}")
        state["last"] = step

    return on_step
