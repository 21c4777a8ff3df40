-- wrk script of scripts/load-test.sh for the DPoP configuration: every request carries
-- `Authorization: DPoP <token>` and its own `DPoP` proof, each line of the file (`token proof`,
-- as `load_server serve --dpop-proofs` writes them) used once. The requests are formatted once,
-- in init, so the generator spends no CPU on them. Run with one thread (-t1): a second thread
-- would send the same proofs again, which the server refuses as replays.
--
-- Arguments (after `--`): the file's path, and how many proofs earlier runs used (this run
-- starts after them). Proofs are signed when the server starts and stay fresh for its ±5 min
-- window: a whole run must fit in it.
local requests = {}
local count = 0
local next_index = 0

-- At most this many proofs are formatted per run (a run of 10 s at ~15,000 requests/s).
local per_run = 150000

function init(args)
  local skip = tonumber(args[2] or "0")
  local line_number = 0
  for line in io.lines(args[1]) do
    line_number = line_number + 1
    if line_number > skip then
      local token, proof = line:match("^(%S+) (%S+)$")
      if token then
        count = count + 1
        requests[count] = wrk.format("GET", "/", {
          ["Authorization"] = "DPoP " .. token,
          ["DPoP"] = proof,
        })
      end
      if count >= per_run then break end
    end
  end
  next_index = 0
end

function request()
  -- Past the last proof, the first ones come back: replays, refused (counted as non-2xx).
  next_index = next_index % count + 1
  return requests[next_index]
end
