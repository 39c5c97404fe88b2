-- strategy: random
-- keeps: $size pairs drawn uniformly from the scored pref pairs: the $size smallest md5($seed || ':' || pair_id);
--   the same seed gives the same subset in any workspace holding those pairs (the vanilla baseline's random pairs)
-- params: size, seed, iteration, branch, model_id
-- paper: FRFT section 6, Table 1 (vanilla PPO, RM on 2,000 random HH-RLHF pairs)
-- returns: pair_id, rank, score, picked_by
with scored as (
    select s.pair_id
    from similarities s join pairs p using (pair_id)
    where s.branch = $branch and s.iteration = $iteration and s.model_id = $model_id and p.role = 'pref'
),
drawn as (
    select pair_id, md5(cast($seed as varchar) || ':' || pair_id) as draw
    from scored
    order by draw, pair_id
    limit $size
)
select pair_id, row_number() over (order by draw, pair_id) as rank, null as score, 'random' as picked_by
from drawn
order by rank
