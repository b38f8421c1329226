"""How listeners reach the service: a middleware puts it in Bolt's context for every request,
so listener callbacks are plain module-level functions that tests can call directly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncBoltContext

from bot.jobs import JobService

SERVICE_KEY = "motion_service"


def service_middleware(
    service: JobService,
) -> Callable[[AsyncBoltContext, Callable[[], Awaitable[Any]]], Awaitable[Any]]:
    async def with_service(context: AsyncBoltContext, next: Callable[[], Awaitable[Any]]) -> Any:
        context[SERVICE_KEY] = service
        return await next()

    return with_service


def service_of(context: AsyncBoltContext) -> JobService:
    service = context.get(SERVICE_KEY)
    assert isinstance(service, JobService), "listeners.register() puts the service in context"
    return service
