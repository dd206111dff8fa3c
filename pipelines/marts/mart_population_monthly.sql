-- mart_population_monthly: births and deaths per division and month (from population__person).
SELECT division_code, division_name, month,
    sum(births)::BIGINT AS births, sum(deaths)::BIGINT AS deaths FROM (
    SELECT division_code, division_name, date_trunc('month', birth_date)::DATE AS month,
        1 AS births, 0 AS deaths FROM population__person WHERE birth_date IS NOT NULL
    UNION ALL
    SELECT division_code, division_name, date_trunc('month', death_date)::DATE, 0, 1
    FROM population__person WHERE death_date IS NOT NULL)
GROUP BY ALL ORDER BY ALL
