-- The network figures every dashboard shows: the aggregator's "did the network move?" check.
SELECT
    (SELECT value FROM network_state WHERE key = 'difficulty') AS network_diff,
    (SELECT value FROM network_state WHERE key = 'height') AS network_height
