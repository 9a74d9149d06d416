"""The experiment endpoints: the configured experiments and each one's report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from genre_agent.experiments.readout import UnknownExperiment
from genre_agent.experiments.report import ExperimentReport
from genre_agent.http.errors import errors
from genre_agent.http.service import Service


class ExperimentOut(BaseModel):
    name: str = Field(description="The experiment's name (GET /v1/experiments/{name}).")
    kind: str = Field(description='"ab" or "interleave".')
    enabled: bool = Field(description="Whether users are being assigned to it.")
    variants: list[str] = Field(description="Its variants, the first being the control.")


class ExperimentsOut(BaseModel):
    experiments: list[ExperimentOut] = Field(description="service.experiments, in order.")


ExperimentName = Annotated[str, Path(description="An experiment of service.experiments.")]


def build_experiments(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["experiments"])

    @router.get("/experiments", response_model=ExperimentsOut, responses=errors(422, 503))
    def list_experiments() -> ExperimentsOut:
        """The experiments of service.experiments, in order (a user is in the first enabled
        one)."""
        return ExperimentsOut(
            experiments=[
                ExperimentOut(
                    name=e.name,
                    kind=e.kind,
                    enabled=e.enabled,
                    variants=[v.name for v in e.variants],
                )
                for e in service.config.service.experiments
            ]
        )

    @router.get(
        "/experiments/{name}", response_model=ExperimentReport, responses=errors(404, 422, 503)
    )
    def experiment_report(name: ExperimentName) -> ExperimentReport:
        """Per variant: exposures, users, positives per impression and the MRR of the first
        positive (means over users, 95% bootstrap CIs over users), LLM cost, and the test
        between variants (Welch's t for A/B, a sign test over users for interleaving);
        warnings when a variant has too few users (docs/experiments.md)."""
        try:
            return service.experiments.report(name)
        except UnknownExperiment as exc:
            raise HTTPException(404, str(exc)) from None

    return router
