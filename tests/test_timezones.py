"""The one time-zone validator behind every ``timezone:`` key."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from fileferry.automation.settings import ScheduleSettings
from fileferry.identity.settings import HoursSettings


@pytest.mark.parametrize("bad", ["Mars/Base", "CET+1", "../etc/passwd", "/etc/localtime", ""])
def test_route_schedules_and_policy_hours_refuse_the_same_names(bad: str) -> None:
    cases: list[tuple[type[BaseModel], dict[str, str]]] = [
        (ScheduleSettings, {"cron": "0 2 * * *"}),
        (HoursSettings, {"start": "07:00", "end": "19:00"})]
    for model, data in cases:
        with pytest.raises(ValueError, match=r"timezone\n.*unknown time zone .*use an IANA name"):
            model.model_validate({**data, "timezone": bad})
        good = model.model_validate({**data, "timezone": "Europe/Berlin"})
        assert good.model_dump()["timezone"] == "Europe/Berlin"
