-- strategy: split-even
-- keeps: the top ceil($size / 2) pairs by pos_sim with pos_sim > 1 - $eps, and the top
--   floor($size / 2) by neg_sim with neg_sim > 1 - $eps. A pair picked by both halves appears
--   twice (picked_by 'pos' and 'neg'), as in the paper; with $distinct the neg half skips pairs
--   the pos half took, so the subset holds up to $size distinct pairs.
-- params: eps, size, iteration, branch, model_id, aggregate, distinct
-- paper: FRFT section 5.3, Part 2
-- returns: pair_id, rank, score, picked_by
with scored as (
    select pair_id,
           case when $aggregate = 'max' then pos_sim_max else pos_sim end as pos,
           case when $aggregate = 'max' then neg_sim_max else neg_sim end as neg
    from similarities
    where branch = $branch and iteration = $iteration and model_id = $model_id
),
pos_half as (
    select pair_id, pos as score, 'pos' as picked_by
    from scored
    where pos > 1 - $eps
    order by pos desc, pair_id
    limit ($size + 1) // 2
),
neg_half as (
    select pair_id, neg as score, 'neg' as picked_by
    from scored
    where neg > 1 - $eps and not ($distinct and pair_id in (select pair_id from pos_half))
    order by neg desc, pair_id
    limit $size // 2
),
picked as (select * from pos_half union all select * from neg_half)
select pair_id, row_number() over (order by score desc, pair_id, picked_by desc) as rank, score, picked_by
from picked
order by rank
