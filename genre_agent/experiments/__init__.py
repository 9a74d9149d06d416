"""Online experiments between configurations: A/B splits and team-draft interleaving.

Roles: ``config`` (the ``service.experiments`` section), ``overlay`` (a variant's config),
``assign`` (which variant a user gets), ``interleave`` (team-draft merging and credit),
``exposures`` (what was shown, joined with feedback), ``report`` (the numbers and tests).
"""
