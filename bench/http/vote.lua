-- Votes: every request a new reader (so every vote changes the counts). The first script
-- argument names the round, so a later round's readers are new too; the second is the path
-- (the product's by default). The thin reference gets the same requests at its own path, so
-- that wrk's own work per request, on the same cores, is the same on both sides of a ratio.
local counter = 0
local thread_id = 0
local round = "0"
local path = "/api/v1/reactions"
local reactions = {"happy", "sad", "excited", "sleepy", "angry", "surprise"}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
end

function init(args)
  round = args[1] or "0"
  path = args[2] or path
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"site":"demo","article":"bench","reader":"reader-%s-%d-%09d","reaction":"%s"}',
    round, id, counter, reactions[counter % 6 + 1])
  return wrk.format("POST", path, nil, body)
end
