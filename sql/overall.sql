-- strategy: overall
-- keeps: pairs whose policy sample is close to both responses (pos_sim > 1 - $eps and
--   neg_sim > 1 - $eps); the top $size by pos_sim + neg_sim
-- params: eps, size, iteration, branch, model_id, aggregate
-- paper: FRFT section 5.3, Part 1
-- returns: pair_id, rank, score, picked_by
with scored as (
    select pair_id,
           case when $aggregate = 'max' then pos_sim_max else pos_sim end as pos,
           case when $aggregate = 'max' then neg_sim_max else neg_sim end as neg
    from similarities
    where branch = $branch and iteration = $iteration and model_id = $model_id
),
picked as (
    select pair_id, pos + neg as score, 'both' as picked_by
    from scored
    where pos > 1 - $eps and neg > 1 - $eps
    order by score desc, pair_id
    limit $size
)
select pair_id, row_number() over (order by score desc, pair_id) as rank, score, picked_by
from picked
order by rank
