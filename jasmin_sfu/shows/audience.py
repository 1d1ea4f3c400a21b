"""Who may receive each producer of a show: one rule, one home.

Every producer in a show's router has an audience **owner**, what decides who may consume
it (docs/cluster.md "Who receives each producer"). The audience of a producer is always
``its owner's keys for the show now``; a show's audience change (a private, its end, a
performer joining a group show) and an edge's audience change (the origin's word about a
member watching there) apply that one rule to every producer, with no case per kind.

==============  ======================================  ========================================
owner           which producers                         its audience
==============  ======================================  ========================================
SHOW            a performer's tracks on the show's      the show's audience: everyone in free
                node; their replicas on an edge         chat, else the performers, the members
                                                        it is for and the relays toward them
                                                        (on an edge: the sessions there of the
                                                        members the origin limited it to)
PERFORMERS      a member's Cam2Cam on the show's node   the performers' sessions, in every state
                (published there, or the replicas of
                one sent from the member's edge)
RELAY           a member's Cam2Cam on its own edge      fixed where it is made: the relay up to
                                                        the show's node only (nobody local)
==============  ======================================  ========================================

The owner is read from what the producer's maker set on it before the router held it, in
one place (:func:`owner_of`): a producer made exclusive (``exclusive_to``, so that nobody
outside its first audience ever knows of it) is a Cam2Cam; one whose app data names the
show's node it is sent up to (``cam2cam_to``) is on its member's edge.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable

from jasmin_sfu.media.producer import Producer

# The app-data key of a member's Cam2Cam producer on its edge: the show's node it goes up to.
CAM2CAM_TO = "cam2cam_to"


class AudienceOwner(enum.Enum):
    """What decides a producer's audience (the module docstring's table)."""

    SHOW = "show"
    PERFORMERS = "performers"
    RELAY = "relay"

    @property
    def fixed(self) -> bool:
        """The audience is the one the producer was made with; no audience change touches it."""
        return self is AudienceOwner.RELAY


def owner_of(producer: Producer) -> AudienceOwner:
    """The owner of ``producer``: the only place a producer's kind decides who receives it."""
    if not producer.exclusive:
        return AudienceOwner.SHOW
    if CAM2CAM_TO in producer.app_data:
        return AudienceOwner.RELAY
    return AudienceOwner.PERFORMERS


@dataclass(frozen=True)
class Audiences:
    """Each owner's keys for one show on this node, at one moment.

    ``show``: the show's audience as audience keys here (None: everyone); ``performers``:
    the performers' sessions here (none on an edge)."""

    show: frozenset[str] | None
    performers: frozenset[str]

    def keys_for(self, producer: Producer) -> frozenset[str] | None:
        """The audience ``producer`` must have now: its owner's keys."""
        owner = owner_of(producer)
        if owner is AudienceOwner.SHOW:
            return self.show
        if owner is AudienceOwner.PERFORMERS:
            return self.performers
        return producer.audience  # fixed where it was made

    def apply(self, producers: Iterable[Producer], *, changed_only: bool = False) -> None:
        """Give each of ``producers`` its owner's keys, synchronously (in this event-loop step).

        ``changed_only`` leaves a producer whose audience is already right alone (its keyframe
        cache too, which every later viewer starts from: the edge's way)."""
        for p in list(producers):
            if p.closed or owner_of(p).fixed:
                continue
            keys = self.keys_for(p)
            if changed_only and p.audience == keys:
                continue
            p.set_audience(keys)
