"""Sharing rules: what two channels may share, what must then agree, what it changes.

Several municipalities often use one homeserver, one mail server, one Twilio
account. That is allowed; :func:`analyse` says what it means for the drill and
refuses what cannot work. It reads a loaded :class:`~drills.core.registry.Registry`
(live channels only: a ``sim:`` channel talks to its own simulator) and returns
:class:`Finding` objects — ``error`` (the registry is wrong: ``registry check``
exits 2), ``warning`` (probably wrong, or a connection is split), ``note``
(allowed; read the results this way). :func:`check_sharing` refuses the errors
for every drill as ``registry check`` does, for the channels it drills.

============================  =========  ==============================================  ==========================================
Shared                        Allowed?   What changes                                    What must agree
============================  =========  ==============================================  ==========================================
Matrix homeserver             yes        an outage of it is one fault seen as ``lost``   —
                                         on every municipality using it at once
Chat room / channel           yes        a confirmation proves the message reached the   —
(Matrix, Slack, Mattermost,              room every member reads, not which
Teams, LINE WORKS)                       municipality's staff read it (tokens still
                                         tell the messages apart)
Matrix sender account         yes        its sends are rate limited together             —
Observer = sender (same       **no**     a sender always sees its own message: nothing   error (``registry check``; at open when
account or same token)                   could be confirmed                              the file does not name both identities)
Mailbox (IMAP server + user   yes        one IMAP login serves every channel whose       password (error); security, port, CA,
+ folder, or one Maildir)                connection settings agree; a confirmation says  verify: if they differ each channel gets
                                         the mail reached this mailbox                   its own connection (warning, says which)
IMAP / SMTP account           yes        —                                               password (one account has one password)
(server + user)
Mail address in ``to``        yes        one person's mailbox answers for several        —
                                         municipalities
Twilio number (``from``)      yes        Twilio sends a number's messages one after     the account (a number belongs to one
                                         another at its rate: each channel's latency     account: error); the auth token
                                         includes the others' sends                      (warning: Twilio has two)
Twilio account                yes        ``caps`` are per channel; the account's spend   auth token (warning)
                                         is the sum
Status callback listener      yes        one listener serves all                         ``public_url`` (error: the listener
(``listen_host:listen_port``)                                                            answers at one address)
Phone number in ``to``        yes        one phone answers for several municipalities    —
Webhook URL                   yes        the channels post to one place; only the        —
                                         tokens tell their messages apart
============================  =========  ==============================================  ==========================================

>>> from drills.core.registry import parse_registry
>>> reg = parse_registry('''
... municipalities:
...   - code: "131016"
...     name: 千代田区
...     channels:
...       - {id: chat, kind: matrix, homeserver: "https://m.example.lg.jp",
...          room: "!r:example.lg.jp",
...          sender: {user: "@bot:example.lg.jp", token: "env:T1"},
...          observer: {user: "@bot:example.lg.jp", token: "env:T2"}}
... ''', check_secrets=False)
>>> [(f.severity.value, f.rule, dotted(f.path)) for f in analyse(reg)]
[('error', 'observer-is-sender', 'municipalities[0].channels[0].observer.user')]
"""

from __future__ import annotations

from collections.abc import Iterable

from drills.core.errors import RegistryError
from drills.core.problem import Problem
from drills.core.registry import Registry, Target
from drills.core.sharing.chat import chat_rules, observer_is_sender, webhook_rules
from drills.core.sharing.findings import Finding, Severity, seats
from drills.core.sharing.mail import mail_rules
from drills.core.sharing.sms import twilio_rules
from drills.core.yamlpos import LineMap, dotted

__all__ = ["Finding", "Severity", "analyse", "check_sharing", "located", "said"]


def analyse(
    registry: Registry, *, reveal: bool = True, targets: Iterable[Target] | None = None
) -> list[Finding]:
    """What the live channels of *registry* share, and what that means; errors first.

    ``reveal=False`` compares secret references by name only (``--no-secrets``):
    two different references are then "cannot tell" (a warning), never an error.
    *targets* (default: every channel) limits the analysis to the channels a run
    drills — what the others share is none of its business (their secrets may not
    even be set here).
    """
    live = seats(registry)
    if targets is not None:
        drilled = {(t.municipality.code, t.channel.id) for t in targets}
        live = [s for s in live if (s.municipality.code, s.channel.id) in drilled]
    found = (
        observer_is_sender(live, reveal)
        + mail_rules(live, reveal)
        + twilio_rules(live, reveal)
        + chat_rules(live)
        + webhook_rules(live)
    )
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.NOTE: 2}
    return sorted(found, key=lambda f: order[f.severity])


def located(findings: list[Finding], lines: LineMap, file: str) -> list[tuple[Finding, Problem]]:
    """Each finding with the :class:`Problem` naming its file, line and field."""
    return [
        (f, Problem(file, lines.line(f.path), dotted(f.path), f.why_ja, f.why_en)) for f in findings
    ]


def check_sharing(
    registry: Registry, targets: Iterable[Target] | None = None, *, reveal: bool = True
) -> list[tuple[Finding, Problem]]:
    """Refuse what cannot work among *targets*' live channels, as ``registry check`` does.

    Raises :class:`RegistryError` (file, line and field of each error, ja and en) when
    an error is found; returns the warnings and notes, located, for the caller to say
    once before the drill starts. Every drill that loads a registry (``run``'s pytest
    session, the operator API's ``open_drill``, ``surge``) calls it with the targets it
    drills, after their secrets resolved; ``demo`` drills simulators only.
    """
    found = located(
        analyse(registry, reveal=reveal, targets=targets), registry.lines, registry.path
    )
    errors = [problem for finding, problem in found if finding.severity is Severity.ERROR]
    if errors:
        raise RegistryError(errors)
    return found


def said(finding: Finding, problem: Problem, lang: str = "ja") -> str:
    """One warning or note as people read it: ``警告: FILE:LINE: FIELD: …`` / ``warning: …``."""
    label = {
        Severity.ERROR: ("誤り", "error"),
        Severity.WARNING: ("警告", "warning"),
        Severity.NOTE: ("注記", "note"),
    }[finding.severity]
    return f"{label[0] if lang == 'ja' else label[1]}: {problem.render(lang)}"
