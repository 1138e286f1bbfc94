"""The admin's reaction sets: the reactions the default set and each named set offer, and
adding, editing and removing named sets (routes of the admin blueprint, behind its login).
Saved with `store.save_site`, which announces the change to every process and open bar."""

from __future__ import annotations

from dataclasses import replace

from flask import abort, redirect, render_template, request, url_for

from .admin import MAX_REACTIONS, admin_site, bp
from .reactions import (
    REACTION_ID,
    SET_STYLES,
    THUMBS_REACTIONS,
    InvalidField,
    Reaction,
    validate_set_name,
)
from .store import NamedSet, Site, current_store

MAX_SETS = 8


@bp.route("/sites/<name>/reactions", methods=["GET", "POST"])
def reaction_set(name: str):
    """The reactions each set offers; a POST saves the default set, or with `?set=` that
    named set (its reactions and style)."""
    store = current_store()
    site = admin_site(name)
    if request.method == "POST":
        set_name = request.args.get("set", "")
        if not set_name:
            active, retired = edited_reactions(site.all_reactions, request.form)
            store.save_site(replace(site, reactions=active, retired=retired))
            return redirect(url_for("admin.reaction_set", name=name, saved=1))
        named = site.named_set(set_name)
        if named is None:
            abort(404)
        active, retired = edited_reactions(named.all_reactions, request.form)
        edited = replace(named, reactions=active, retired=retired, style=set_style(request.form))
        store.save_site(with_set(site, edited))
        return redirect(
            url_for("admin.reaction_set", name=name, saved=set_name, _anchor=f"set-{set_name}")
        )
    return render_template(
        "admin/reactions.html",
        site=site,
        saved=request.args.get("saved"),
        removed=request.args.get("removed"),
        styles=SET_STYLES,
        max_sets=MAX_SETS,
    )


@bp.post("/sites/<name>/sets")
def add_set(name: str):
    """A new named set: the like/dislike pair or a copy of the default set's offered
    reactions, to edit afterwards. A set removed earlier under that name comes back with
    its counts, which stayed in Redis."""
    store = current_store()
    site = admin_site(name)
    set_name = validate_set_name(request.form.get("set", "").strip())
    if not set_name:
        raise InvalidField("give the new set a name, such as thumbs")
    if site.named_set(set_name) is not None:
        raise InvalidField(f"site '{site.name}' has a set '{set_name}' already; edit it below")
    if len(site.sets) >= MAX_SETS:
        raise InvalidField(f"a site has at most {MAX_SETS} named sets; remove one first")
    presets = {"thumbs": THUMBS_REACTIONS, "default": site.reactions}
    preset = request.form.get("preset", "thumbs")
    if preset not in presets:
        raise InvalidField("a new set starts with the like/dislike pair or the default set")
    added = NamedSet(set_name, presets[preset], set_style(request.form))
    store.save_site(replace(site, sets=(*site.sets, added)))
    return redirect(
        url_for("admin.reaction_set", name=name, saved=set_name, _anchor=f"set-{set_name}")
    )


@bp.post("/sites/<name>/sets/remove")
def remove_set(name: str):
    """Stops offering a named set; its counts stay in Redis (adding it again shows them)."""
    store = current_store()
    site = admin_site(name)
    set_name = request.args.get("set", "")
    if site.named_set(set_name) is None:
        abort(404)
    if request.form.get("confirm") != "yes":
        raise InvalidField("tick the box to confirm the removal")
    store.save_site(replace(site, sets=tuple(s for s in site.sets if s.name != set_name)))
    return redirect(url_for("admin.reaction_set", name=name, removed=set_name))


def with_set(site: Site, edited: NamedSet) -> Site:
    return replace(site, sets=tuple(edited if s.name == edited.name else s for s in site.sets))


def set_style(form) -> str:
    style = form.get("style", "percent")
    if style not in SET_STYLES:
        raise InvalidField(f"a set's style is one of {', '.join(SET_STYLES)}")
    return style


def edited_reactions(
    every: tuple[Reaction, ...], form
) -> tuple[tuple[Reaction, ...], tuple[Reaction, ...]]:
    """(offered, retired) reactions of a set as the form edits them: labels and emoji,
    retirements, restorations and an addition. `every` is the set's reactions, retired ones
    too; a reaction is offered when its box is ticked."""

    def text(field: str, limit: int, what: str) -> str:
        value = " ".join(form.get(field, "").split())
        if not value or len(value) > limit:
            raise InvalidField(f"{what} must be 1-{limit} characters")
        return value

    active, retired = [], []
    for reaction in every:
        edited = Reaction(
            reaction.id,
            text(f"emoji-{reaction.id}", 16, f"the emoji of '{reaction.id}'"),
            text(f"label-{reaction.id}", 32, f"the label of '{reaction.id}'"),
        )
        keep = form.get(f"active-{reaction.id}") == "on"
        (active if keep else retired).append(edited)
    new_id = form.get("new-id", "").strip()
    if new_id:
        if not REACTION_ID.fullmatch(new_id):
            raise InvalidField("a new reaction id is 1-32 lowercase letters, digits, - or _")
        if new_id in {r.id for r in every}:
            raise InvalidField(f"reaction '{new_id}' exists already (restore it instead)")
        active.append(
            Reaction(new_id, text("new-emoji", 16, "the emoji"), text("new-label", 32, "the label"))
        )
    if not active:
        raise InvalidField("a set needs at least one offered reaction")
    if len(active) > MAX_REACTIONS:
        raise InvalidField(f"at most {MAX_REACTIONS} active reactions")
    return tuple(active), tuple(retired)
