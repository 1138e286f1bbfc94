-- Product votes: every request a new reader (so every vote changes the counts). The first
-- script argument names the round, so a later round's readers are new too.
local counter = 0
local thread_id = 0
local round = "0"
local reactions = {"happy", "sad", "excited", "sleepy", "angry", "surprise"}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
end

function init(args)
  round = args[1] or "0"
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"site":"demo","article":"bench","reader":"reader-%s-%d-%09d","reaction":"%s"}',
    round, id, counter, reactions[counter % 6 + 1])
  return wrk.format("POST", "/api/v1/reactions", nil, body)
end
