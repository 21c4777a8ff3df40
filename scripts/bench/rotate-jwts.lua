-- wrk script of scripts/load-test.sh for the JWT configurations: every request carries
-- `Authorization: Bearer <jwt>`, rotating over the JWTs in a file (one per line, as
-- `load_server serve` lists them at `/jwts`). The requests are formatted once, in init, so the
-- generator spends no CPU on them.
--
-- Argument (after `--`): the file's path.
local requests = {}
local count = 0
local next_index = 0

function init(args)
  for token in io.lines(args[1]) do
    if token ~= "" then
      count = count + 1
      requests[count] = wrk.format("GET", "/", { ["Authorization"] = "Bearer " .. token })
    end
  end
  next_index = 0
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end
