-- wrk script of scripts/load-test.sh: every request carries `Authorization: Bearer <token>`,
-- rotating over the load's valid tokens (`load-token-` and 32 digits, as examples/load_server.rs
-- mints them). The requests are formatted once, in init, so the generator spends no CPU on them.
--
-- Arguments (after `--`): the number of tokens (default 1000), and `fixed` to send token 0 only
-- (tower-http's static bearer check knows one token).
local requests = {}
local count = 0
local next_index = 0

function init(args)
  local tokens = tonumber(args[1]) or 1000
  local fixed = args[2] == "fixed"
  for i = 0, tokens - 1 do
    local token = string.format("load-token-%032d", fixed and 0 or i)
    requests[i + 1] = wrk.format("GET", "/", { ["Authorization"] = "Bearer " .. token })
  end
  count = tokens
  next_index = 0
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end
