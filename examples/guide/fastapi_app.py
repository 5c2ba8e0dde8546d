"""The guide's "Complete FastAPI Example", as written (only the import lines changed).

Run it with ``python examples/guide/fastapi_app.py`` (or ``uvicorn``) and OPENAI_API_KEY set; the
tests point OPENAI_BASE_URL at kubebots' fake OpenAI server. Unknown bot ids answer 500
``ConfigurationError``: the guide's loader raises ``ValueError``, which kubebots reports as a
broken configuration (a loader that raises ``KeyError`` or returns ``None`` gets a 404).
"""

from fastapi import FastAPI
from pydantic import BaseModel
from kubebots.runtime import BotContext
from kubebots.runtime.api import (
    init_bot_manager,
    reset_bot_manager,
    BotManagerDep,
    BotNotFoundError,
    register_exception_handlers,
)

app = FastAPI(title="Multi-Tenant Bot API")

# Register exception handlers
register_exception_handlers(app)


class ChatRequest(BaseModel):
    message: str
    conversation_id: str
    client_id: str
    user_id: str | None = None


class ChatResponse(BaseModel):
    response: str
    conversation_id: str


def load_config(bot_id: str) -> dict:
    """Load bot configuration."""
    configs = {
        "support": {
            "llm": {"provider": "openai", "model": "gpt-4o"},
            "conversation_storage": {"backend": "memory"},
            "system_prompt": "You are a customer support assistant.",
        },
        "sales": {
            "llm": {"provider": "openai", "model": "gpt-4o"},
            "conversation_storage": {"backend": "memory"},
            "system_prompt": "You are a sales assistant.",
        },
    }
    if bot_id not in configs:
        raise ValueError(f"Unknown bot: {bot_id}")
    return configs[bot_id]


@app.on_event("startup")
async def startup():
    init_bot_manager(config_loader=load_config)


@app.on_event("shutdown")
async def shutdown():
    reset_bot_manager()


@app.post("/bots/{bot_id}/chat", response_model=ChatResponse)
async def chat(
    bot_id: str,
    request: ChatRequest,
    manager: BotManagerDep,
):
    """Chat with a bot."""
    bot = await manager.get_or_create(bot_id)
    context = BotContext(
        conversation_id=request.conversation_id,
        client_id=request.client_id,
        user_id=request.user_id,
    )
    response = await bot.chat(request.message, context)
    return ChatResponse(
        response=response,
        conversation_id=request.conversation_id,
    )


@app.get("/bots")
async def list_bots(manager: BotManagerDep):
    """List active bots."""
    return {
        "bots": manager.list_bots(),
        "count": manager.get_bot_count(),
    }


@app.delete("/bots/{bot_id}")
async def remove_bot(bot_id: str, manager: BotManagerDep):
    """Remove a bot instance."""
    removed = await manager.remove(bot_id)
    if not removed:
        raise BotNotFoundError(bot_id)
    return {"removed": True, "bot_id": bot_id}


if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="0.0.0.0", port=8000)
