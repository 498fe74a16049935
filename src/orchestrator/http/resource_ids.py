"""Resource ids in paths: `{job_id:id}` matches only a UUID, handed over in lower case.

Matching in the router rather than in each handler means a path such as `/api/v1/jobs/claim`
names no job: a wrong method there is a 405 that allows only what `claim` serves, and a path
whose id is not a UUID is a 404 before authentication or a body is looked at.
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor


class ResourceIdConvertor(Convertor[str]):
    regex = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

    def convert(self, value: str) -> str:
        return value.lower()

    def to_string(self, value: str) -> str:
        return value.lower()


def register_resource_ids() -> None:
    """Make `{name:id}` usable in paths (`create_app` does, before it makes the routes)."""
    register_url_convertor("id", ResourceIdConvertor())
