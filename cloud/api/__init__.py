"""The cloud's HTTP side: JSON API (OpenAPI) and server-rendered pages, behind cloud.auth."""
